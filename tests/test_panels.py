"""Panel layouts of projection weights (cold_ms/ops/panels.py) and the layer kernel reading both
layouts at once."""
import numpy as np
import pytest

from cold_ms.errors import ConfigError
from cold_ms.ops import panels
from cold_ms.cells.transformer import assign
from helpers import engine_for


def test_a_panel_holds_16_outputs_side_by_side_for_each_input():
    w = np.arange(32 * 3, dtype=np.float32).reshape(32, 3)  # w[o, k] = 3 o + k
    p = panels.to_panels(w)
    assert p.shape == (2, 3, 16) and p.flags.c_contiguous
    assert p[1, 2, 5] == w[16 + 5, 2]
    np.testing.assert_array_equal(p[0, 0], 3 * np.arange(16))
    np.testing.assert_array_equal(panels.to_rows(p), w)


def test_assign_rejects_an_array_of_another_layout(tiny):
    eng = engine_for(tiny)
    name = "model.layers.0.mlp.up_proj.weight"
    with pytest.raises(ConfigError, match="does not fit"):
        assign(eng.lm, {name: panels.to_panels(eng.model.weights[name])})


def test_a_layer_of_both_layouts_matches_the_numpy_model(tmp_path):
    """A bf16 checkpoint read as float32: the conversion makes new arrays, so the projections
    go to panels, but intermediate_size 40 keeps gate and up (40 outputs) row-major; one layer
    kernel takes both."""
    import fixtures
    import numpy_llama as ref
    from helpers import all_logits
    cfg, w = fixtures.write_model(str(tmp_path / "m"), cfg=dict(fixtures.TINY, intermediate_size=40), seed=3,
                                  dtype="bfloat16")
    eng = engine_for({"adapter_dir": {}}, model_dir=str(tmp_path / "m"), weights="float32")
    assert eng.prepared["model.layers.0.mlp.up_proj.weight"].data.shape == (40, 32)
    assert eng.prepared["model.layers.0.mlp.down_proj.weight"].data.shape == (2, 40, 16)
    prompt = [1, 17, 42, 5, 88, 3, 60, 9, 21]
    assert np.abs(all_logits(eng, prompt, -1) - ref.forward(w, cfg, prompt)).max() < 5e-5
