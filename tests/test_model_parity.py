"""Logits of the Cells against the independent numpy reference, on real HF/PEFT files."""
import json
import os

import numpy as np
import pytest

from mindspore import Tensor

import fixtures
from cold_ms import wtypes
from cold_ms.formats.adapters import exact_dtype
import numpy_llama as ref
from helpers import all_logits, engine_for

PROMPT = [1, 17, 42, 5, 88, 3, 60, 9, 21]
TOL = 5e-5


def _check(engine, cfg, weights, adapter, slot):
    got = all_logits(engine, PROMPT, slot)
    want = ref.forward(ref.effective_weights(weights, adapter), cfg, PROMPT)
    assert np.abs(got - want).max() < TOL, np.abs(got - want).max()


def test_base_model_logits(tiny):
    eng = engine_for(tiny)
    _check(eng, tiny["cfg"], tiny["weights"], None, -1)


@pytest.fixture(scope="module")
def three_adapters(tiny):
    """One engine (one compiled forward) for every slot's check: each check writes every position it reads."""
    return engine_for(tiny, ("qv", "all", "mlp"))


@pytest.mark.parametrize("slot,name", [(0, "qv"), (1, "all"), (2, "mlp"), (-1, None)])
def test_adapter_slots_of_different_ranks_and_targets(tiny, three_adapters, slot, name):
    eng = three_adapters
    assert eng.adapters.layout().rank == 8  # ranks 4, 8, 2 zero-padded to 8
    adapter = tiny["adapters"][name] if name else None
    _check(eng, tiny["cfg"], tiny["weights"], adapter, slot)


def test_tied_embeddings(tmp_path):
    cfg = dict(fixtures.TINY, tie_word_embeddings=True, num_key_value_heads=1)
    cfg, w = fixtures.write_model(str(tmp_path / "m"), cfg=cfg, seed=5)
    eng = engine_for({"adapter_dir": {}}, model_dir=str(tmp_path / "m"))
    _check(eng, cfg, w, None, -1)


@pytest.mark.parametrize("hidden,heads", [(256, 2), (160, 4)])
def test_head_sizes_past_one_vector(tmp_path, hidden, heads):
    """Head size 128 (the attention's unrolled path) and 40 (whole vectors plus a tail), over
    37 positions (key blocks of 16 and a partial one)."""
    cfg = dict(fixtures.TINY, hidden_size=hidden, num_attention_heads=heads, num_key_value_heads=heads // 2)
    cfg, w = fixtures.write_model(str(tmp_path / "m"), cfg=cfg, seed=8)
    eng = engine_for({"adapter_dir": {}}, model_dir=str(tmp_path / "m"))
    prompt = PROMPT * 4 + [7]
    got = all_logits(eng, prompt, -1)
    assert np.abs(got - ref.forward(w, cfg, prompt)).max() < TOL


@pytest.mark.parametrize("dtype,shards", [("bfloat16", 3), ("float16", 1)])
def test_half_precision_and_sharded_checkpoints(tmp_path, dtype, shards):
    # transformers 5 spells rope_theta inside rope_parameters
    cfg = {k: v for k, v in fixtures.TINY.items() if k != "rope_theta"}
    cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": 500000.0}
    _, w = fixtures.write_model(str(tmp_path / "m"), cfg=cfg, seed=6, dtype=dtype, shards=shards)
    eng = engine_for({"adapter_dir": {}}, model_dir=str(tmp_path / "m"))
    assert eng.model.config.rope_theta == 500000.0
    half = {"bfloat16": "bf16", "float16": "f16"}[dtype]  # matrices stay as stored, vectors are float32
    assert {wtypes.type_of(a).name for n, a in eng.model.weights.items() if a.ndim == 2} == {half}
    assert all(a.dtype == np.float32 for a in eng.model.weights.values() if a.ndim == 1)
    assert eng.weights.startswith(f"auto: {half} x")  # the engine reads them as stored
    _check(eng, dict(cfg, rope_theta=500000.0), w, None, -1)


def test_adapter_scaling_and_rslora(tmp_path, tiny):
    path = tmp_path / "rs"
    adapter = fixtures.write_adapter(str(path), tiny["cfg"], rank=4, alpha=16, seed=9)
    conf = json.loads((path / "adapter_config.json").read_text())
    (path / "adapter_config.json").write_text(json.dumps(dict(conf, use_rslora=True)))
    tiny2 = dict(tiny, adapter_dir={"rs": str(path)})
    eng = engine_for(tiny2, ("rs",))
    adapter["scaling"] = 16 / np.sqrt(4)
    _check(eng, tiny["cfg"], tiny["weights"], adapter, 0)
    assert os.path.isfile(path / "adapter_model.safetensors")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_an_adapter_saved_in_half_precision_is_stacked_so(tmp_path, tiny, dtype):
    """PEFT adapters are mostly saved in float16/bfloat16: with scaling 2 every stacked value
    stays exact, so the layer kernels keep the stacks in that type (half the bytes a step
    reads) and give the numpy model's logits on the stored values. Scaling 1.5 leaves values
    no half type holds: float32 stacks. (bfloat16 values inside float16's normal range are
    float16 values too, and would be kept so: this adapter's lora_A lies below it.)"""
    targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    scales = {"float16": (0.3, 0.3), "bfloat16": (3e-6, 3e4)}[dtype]
    for alpha, kept in ((8, dtype), (6, "float32")):
        path = tmp_path / f"{dtype}_{alpha}"
        adapter = fixtures.write_adapter(str(path), tiny["cfg"], rank=4, alpha=alpha, targets=targets, seed=12,
                                         dtype=dtype, scale=scales[0], scale_b=scales[1])
        eng = engine_for(dict(tiny, adapter_dir={"half": str(path)}), ("half",))
        assert eng.adapters.layout().dtype == kept
        assert {str(p.dtype) for n, p in eng.lm.parameters_and_names() if ".lora_" in n} == {
            {"float16": "Float16", "bfloat16": "BFloat16", "float32": "Float32"}[kept]}
        _check(eng, tiny["cfg"], tiny["weights"], adapter, 0)


def test_exact_dtype_is_the_narrowest_that_holds_every_value():
    f16 = np.array([0.5, -3.25, 1024.0, 2.0 ** -20], np.float32)  # 2^-20: a float16 subnormal
    bf16 = np.array([1e30, 0.5], np.float32).view(np.uint32) & 0xFFFF0000
    assert exact_dtype([f16]) == "float16"
    assert exact_dtype([f16, bf16.view(np.float32)]) == "bfloat16"  # 1e30 overflows float16
    assert exact_dtype([f16, np.array([0.1], np.float32)]) == "float32"
    assert exact_dtype([np.float16([0.1, 7.0])]) == "float16"


@pytest.mark.parametrize("seq", [21, 70])  # 42 token rows: panel tiles of 8 rows, then 2; 140: of 8, then 4
def test_a_chunk_of_many_rows_into_chosen_cache_rows(tiny, seq):
    """Two rows of a long chunk written into cache rows 3 and 1 of a 4-row engine, with
    different adapters: every position's logits equal the numpy model's, and the cache rows
    no token was written to stay zero."""
    eng = engine_for(tiny, ("qv", "all"), slots=2, max_len=96)
    prompts = np.random.default_rng(11).integers(3, 96, (2, seq))
    adapters, slots = (tiny["adapters"]["all"], None), np.array([1, -1], np.int32)
    args = (Tensor(prompts.astype(np.int32)), Tensor(np.tile(np.arange(seq, dtype=np.int32), (2, 1))),
            Tensor(np.array([3, 1], np.int32)))
    got = np.stack([eng.lm(*args, Tensor(np.array([t, t], np.int32)), Tensor(slots)).asnumpy()
                    for t in range(seq)], axis=1)  # (2, T, V)
    for row in range(2):
        want = ref.forward(ref.effective_weights(tiny["weights"], adapters[row]), tiny["cfg"], list(prompts[row]))
        assert np.abs(got[row] - want).max() < TOL, (row, np.abs(got[row] - want).max())
    cache = eng.lm.model.layers[0].self_attn.cache
    k = cache.k_cache.asnumpy().reshape(cache.shape)
    assert not k[[0, 2]].any() and k[[1, 3]].any()
