"""Qwen2, Qwen3, Gemma 3, Llama 3.1 rope scaling and Mistral's sliding window, from tiny HF
checkpoints with a LoRA adapter on every target module, through both paths of cold_ms (the
MindSpore Cells, `gather` backend, and the CPU layer kernels, `custom`), against the independent
numpy reference of each family (numpy_families.py): logits at every prompt position, and CoLD
tokens over 20 decode steps at two betas (prompts longer than the sliding windows)."""
import numpy as np
import pytest

import family_fixtures
import fixtures
import numpy_families as ref
from cold_ms.formats.adapters import AdapterRegistry, load_peft_adapter
from cold_ms.formats.model import load_model
from cold_ms.pipeline.batching import Request
from cold_ms.pipeline.engine import Engine
from helpers import all_logits

PROMPT = [1, 17, 42, 5, 88, 3, 60, 9, 21, 33, 7]
TOL = 2e-5  # relative to the largest logit: float32 against float64
STEPS = 20


def _family(name, root):
    cfg, weights = family_fixtures.write_family_model(str(root / "model"), name)
    adapter = fixtures.write_adapter(str(root / "lora"), cfg, rank=4, alpha=8, seed=4, scale=0.2,
                                     targets=tuple(fixtures.PROJ_DIMS))
    model = load_model(str(root / "model"))
    return {"name": name, "cfg": cfg, "weights": weights, "adapter": adapter, "model": model,
            "lora": str(root / "lora")}


@pytest.fixture(scope="module", params=sorted(family_fixtures.CONFIGS))
def family(request, tmp_path_factory):
    return _family(request.param, tmp_path_factory.mktemp(request.param))


def _engine(family, backend):
    model = family["model"]
    adapters = AdapterRegistry([load_peft_adapter(family["lora"], "lora", model.config)])
    # one slot, steps of its two rows (expert, amateur): prefill and decode run one step graph, so
    # an engine compiles two graphs (that step, all_logits' forward); the gather ones ~3 s each
    return Engine(model, adapters, slots=1, max_len=48, lora_backend=backend, max_step_tokens=2)


def test_logits_and_cold_tokens_equal_the_numpy_reference(family):
    _check(family, "custom")


def test_the_cells_path_gives_them_on_the_family_with_most_differences(tmp_path):
    """The MindSpore Cells (gather backend) in graph mode on Gemma 3 (QK norms, sandwich norms,
    sliding windows, two rope bases); every family's Cells forward is also checked against this
    reference with a trained adapter (test_families_training.py)."""
    _check(_family("gemma3", tmp_path), "gather")


def _check(family, backend):
    eng = _engine(family, backend)
    cfg, weights = family["cfg"], family["weights"]
    expert = ref.effective_weights(weights, family["adapter"])
    for slot, w in ((0, expert), (-1, weights)):
        got = all_logits(eng, PROMPT, slot)
        want = ref.forward({k: v.astype(np.float64) for k, v in w.items()}, cfg, PROMPT)
        err = np.abs(got - want).max() / max(1.0, np.abs(want).max())
        assert err < TOL, (family["name"], backend, slot, err)
    base = {k: v.astype(np.float64) for k, v in weights.items()}
    got = [eng.generate([Request(PROMPT, adapter="lora", amateur="base", beta=beta, max_new_tokens=STEPS,
                                 ignore_eos=True)])[0].token_ids for beta in (0.5, 2.0)]
    want = [ref.generate(cfg, expert, base, PROMPT, STEPS, 0.1, beta) for beta in (0.5, 2.0)]
    assert got == want


def test_the_config_says_what_the_family_changes(family):
    c, arch = family["model"].config, family["model"].config.arch
    expect = {"qwen2": ("qwen2", True, False, False), "qwen3": ("qwen3", False, True, False),
              "gemma3": ("gemma3", False, True, True), "llama3": ("llama", False, False, False),
              "mistral": ("llama", False, False, False)}[family["name"]]
    assert (c.family, arch.qkv_bias, arch.qk_norm, arch.sandwich_norms) == expect
    want_windows = [family["cfg"].get("sliding_window") if t == ref.SLIDING else 0 for t in ref.layer_types(family["cfg"])]
    assert list(c.layer_windows) == want_windows


@pytest.mark.parametrize("backend", ["gather", "custom"])
def test_pynative_gives_the_reference_logits(tmp_path, backend):
    """PyNative (the debugging mode) on the family with the most differences, Gemma 3."""
    cfg, weights = family_fixtures.write_family_model(str(tmp_path / "m"), "gemma3")
    eng = Engine(load_model(str(tmp_path / "m")), None, slots=1, max_len=48, lora_backend=backend, mode="pynative")
    prompt = PROMPT[:6]  # past the window of 4; PyNative runs each op on its own: short
    got = all_logits(eng, prompt, -1)
    want = ref.forward({k: v.astype(np.float64) for k, v in weights.items()}, cfg, prompt)
    assert np.abs(got - want).max() / np.abs(want).max() < TOL
