"""The benchmark's unfused baselines decode the same tokens as the fused CoLD step."""

from cold_ms.bench.e2e_variants import build
from helpers import engine_for

PROMPT = [1, 5, 7, 9, 30, 31] + list(range(40, 54))  # 20 tokens: prefilled as two 16-token chunks


def _tokens(variant, tiny, batch=2, steps=6):
    eng = engine_for(tiny, ("qv",))
    v = build(variant, eng.model, eng.adapters, "qv", batch, 64, "graph")
    v.prefill(PROMPT)
    if hasattr(v, "slots"):
        for _ in range(steps):
            v.step()
        # a slot whose prompt was prefilled in an earlier step of the budget is a token ahead
        return [st.tokens[:steps + 1] for st in v.slots]
    out = [[int(i)] for i in v.ids]
    for _ in range(steps):
        v.step()
        for row, i in zip(out, v.ids):
            row.append(int(i))
    return out


def test_two_pass_and_two_models_match_fused_cold(tiny):
    fused = _tokens("cold", tiny)
    assert fused[0] == fused[1] and len(fused[0]) == 7
    assert _tokens("cold_two_pass", tiny) == fused
    assert _tokens("cold_two_models", tiny) == fused


def test_the_two_models_share_no_weight(tiny):
    """The naive baseline holds two full copies, as two loaded models would, the expert merged
    and stored in the base's type."""
    import numpy as np
    from cold_ms.bench.e2e_variants import merged_weights
    eng = engine_for(tiny, ("qv",))
    adapter = eng.adapters.adapters[eng.adapters.slot("qv")]
    expert = merged_weights(eng.model, adapter)
    assert expert.keys() == eng.model.weights.keys()
    assert not any(np.may_share_memory(expert[n], w) for n, w in eng.model.weights.items())
    name = "model.layers.0.self_attn.q_proj.weight"
    a, b = adapter.tensors[(0, "q_proj")]
    base = eng.model.weights[name]
    assert expert[name].dtype == base.dtype == np.float32
    np.testing.assert_allclose(expert[name], base + adapter.scaling * (b @ a), rtol=1e-6)


def test_random_checkpoint_loads_with_its_expert_and_a_synthetic_prompt(tmp_path):
    from cold_ms.bench.e2e import SYNTHETIC_PROMPT_LEN, bench_prompt, random_checkpoint
    from cold_ms.formats.adapters import load_peft_adapter
    from cold_ms.formats.model import load_model
    from cold_ms.formats.shipped import resolve_adapter
    model_dir, adapter = random_checkpoint("random:tiny", str(tmp_path))
    model = load_model(model_dir)
    name, path = resolve_adapter(adapter)
    lora = load_peft_adapter(path, name, model.config)
    assert name == "lora" and lora.rank == 16 and len(lora.tensors) == 7 * model.config.num_layers
    prompt = bench_prompt(model)  # no tokenizer: seeded ids, the same every time
    assert len(prompt) == SYNTHETIC_PROMPT_LEN and prompt == bench_prompt(model)
    assert all(3 <= t < model.config.vocab_size for t in prompt)
