"""The panel layout of projection weights (cold_ms/ops/panels.py) and its hand-over to the Cells."""
import numpy as np
import pytest

from cold_ms.errors import ConfigError
from cold_ms.ops import panels
from cold_ms.pipeline.engine import assign
from helpers import engine_for


def test_a_panel_holds_16_outputs_side_by_side_for_each_input():
    w = np.arange(32 * 3, dtype=np.float32).reshape(32, 3)  # w[o, k] = 3 o + k
    p = panels.to_panels(w)
    assert p.shape == (2, 3, 16) and p.flags.c_contiguous
    assert p[1, 2, 5] == w[16 + 5, 2]
    np.testing.assert_array_equal(p[0, 0], 3 * np.arange(16))
    np.testing.assert_array_equal(panels.to_rows(p), w)


def test_convert_replaces_projections_only_and_never_writes_into_an_array():
    q = np.random.default_rng(0).standard_normal((48, 8)).astype(np.float32)
    odd = np.ones((40, 8), np.float32)  # 40 outputs: not a multiple of 16, stays row-major
    weights = {"model.layers.0.self_attn.q_proj.weight": q, "model.layers.0.mlp.down_proj.weight": odd,
               "model.embed_tokens.weight": np.ones((48, 8), np.float32)}
    before = {n: w.copy() for n, w in weights.items()}
    panels.convert(weights, "panels")
    assert weights["model.layers.0.self_attn.q_proj.weight"].shape == (3, 8, 16)
    assert weights["model.layers.0.mlp.down_proj.weight"] is odd
    assert weights["model.embed_tokens.weight"].shape == (48, 8)
    np.testing.assert_array_equal(q, before["model.layers.0.self_attn.q_proj.weight"])  # the old array intact
    panels.convert(weights, "rows")
    for name, w in weights.items():
        np.testing.assert_array_equal(w, before[name])


def test_an_unknown_layout_is_refused(tiny):
    model = engine_for(tiny).model
    with pytest.raises(ConfigError, match="weight layout"):
        model.use_layout("columns")


def test_engines_of_both_layouts_share_one_loaded_model(tiny):
    """A gather engine (rows) built after a custom one (panels) leaves the first one's weights
    alone: both keep generating what they generated alone."""
    from cold_ms.pipeline.batching import Request
    from cold_ms.pipeline.engine import Engine
    custom = engine_for(tiny, ("qv",))
    req = [Request([5, 9, 14, 3], adapter="qv", amateur="base", alpha=0.1, beta=0.5, max_new_tokens=6)]
    alone = custom.generate(req)[0].token_ids
    assert custom.model.layout == "panels"
    gather = Engine(custom.model, custom.adapters, max_len=64, lora_backend="gather")
    assert custom.model.layout == "rows"
    assert gather.generate(req)[0].token_ids == alone == custom.generate(req)[0].token_ids


def test_assign_rejects_an_array_of_the_other_layout(tiny):
    eng = engine_for(tiny)
    name = "model.layers.0.mlp.up_proj.weight"
    rows = panels.to_rows(eng.model.weights[name])
    with pytest.raises(ConfigError, match="does not fit"):
        assign(eng.lm, {name: rows})


def test_a_layer_of_both_layouts_matches_the_numpy_model(tmp_path):
    """intermediate_size 40: gate and up (40 outputs) stay row-major, every other projection
    goes to panels; one layer kernel takes both."""
    import fixtures
    import numpy_llama as ref
    from helpers import all_logits
    cfg, w = fixtures.write_model(str(tmp_path / "m"), cfg=dict(fixtures.TINY, intermediate_size=40), seed=3)
    eng = engine_for({"adapter_dir": {}}, model_dir=str(tmp_path / "m"))
    stored = eng.model.weights
    assert stored["model.layers.0.mlp.up_proj.weight"].shape == (40, 32)
    assert stored["model.layers.0.mlp.down_proj.weight"].shape == (2, 40, 16)
    prompt = [1, 17, 42, 5, 88, 3, 60, 9, 21]
    assert np.abs(all_logits(eng, prompt, -1) - ref.forward(w, cfg, prompt)).max() < 5e-5
