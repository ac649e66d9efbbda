"""Every family's checkpoint formats: a tiny random HF checkpoint (config.json + safetensors) and the
GGUF of the same weights written as llama.cpp's converter writes that architecture load to the same
config and the same float32 weights; what cold_ms cannot run is refused naming the field."""
import json

import numpy as np
import pytest

import fixtures
import gguf_fixtures
from cold_ms.errors import ConfigError
from cold_ms.formats.model import load_model
from cold_ms.formats.names import is_norm
from family_fixtures import FAMILIES, hf_weights

@pytest.fixture(scope="module")
def vocab():
    return gguf_fixtures.bpe_vocab(fixtures.SP_TEXT)[0]


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request, tmp_path_factory, vocab):
    arch, cfg = FAMILIES[request.param]
    root = tmp_path_factory.mktemp(request.param)
    weights = hf_weights(cfg)
    fixtures.write_model(str(root / "hf"), cfg=cfg, weights=weights)
    gguf_fixtures.write_family_gguf(str(root / "m.gguf"), cfg, weights, vocab, arch)
    return {"name": request.param, "cfg": cfg, "weights": weights, "root": root,
            "hf": load_model(str(root / "hf")), "gguf": load_model(str(root / "m.gguf"))}


def test_hf_and_gguf_load_the_same_model(family):
    hf, gg = family["hf"], family["gguf"]
    assert gg.format == "gguf" and hf.format == "safetensors"
    rope = ("rope_scaling", "rope_freq_factors")  # one rope, two spellings: compared by frequencies below
    same = {k: v for k, v in hf.config.__dict__.items() if k not in ("name",) + rope}
    assert {k: v for k, v in gg.config.__dict__.items() if k in same} == same
    assert hf.weights.keys() == gg.weights.keys()
    for name, w in hf.weights.items():
        np.testing.assert_array_equal(np.asarray(gg.weights[name], np.float32), w, err_msg=name)


def test_norms_are_effective_scales(family):
    """Gemma's HF norms (w) load as 1 + w, like the GGUF's; other families' as stored."""
    offset = 1.0 if family["name"] == "gemma3" else 0.0
    stored, loaded = family["weights"], family["hf"].weights
    norms = [n for n in stored if n.endswith("norm.weight")]
    assert len(norms) == {"qwen2": 2 * 2, "qwen3": 2 * 4, "gemma3": 6 * 6, "llama3.1": 2 * 2}[family["name"]] + 1
    for name in norms:
        np.testing.assert_array_equal(loaded[name], stored[name] + np.float32(offset))
        assert abs(float(loaded[name].mean()) - 1.0) < 0.1


def test_family_config_fields(family):
    c = family["gguf"].config
    want = {"qwen2": ("qwen2", 8, (0, 0)), "qwen3": ("qwen3", 16, (0, 0)),
            "gemma3": ("gemma3", 16, (8, 8, 8, 8, 8, 0)), "llama3.1": ("llama", 8, (0, 0))}[family["name"]]
    assert (c.family, c.head_dim, c.layer_windows) == want
    if family["name"] == "gemma3":
        assert (c.rope_local_theta, c.query_pre_attn_scalar, c.tie_word_embeddings) == (10000.0, 16.0, True)
    biases = sorted(n for n in family["gguf"].weights if n.endswith(".bias"))
    assert len(biases) == (3 * 2 if family["name"] == "qwen2" else 0)


def test_llama31_rope_scaling_and_gguf_rope_freqs_give_the_same_frequencies(family):
    from cold_ms.cells.rope import inv_freq
    hf, gg = family["hf"].config, family["gguf"].config
    np.testing.assert_allclose(inv_freq(gg), inv_freq(hf), rtol=2e-6)
    if family["name"] == "llama3.1":
        assert dict(hf.rope_scaling)["rope_type"] == "llama3" and len(gg.rope_freq_factors) == 4
        base = 1.0 / 500000.0 ** (np.arange(0, 8, 2) / 8)
        # by hand: wavelengths 6.3 and 167 are kept, 4443 is blended, 118,000 divided by 8
        smooth = (8192 / (2 * np.pi / base[2]) - 1) / 3
        want = [base[0], base[1], (1 - smooth) * base[2] / 8 + smooth * base[2], base[3] / 8]
        np.testing.assert_allclose(inv_freq(hf), want, rtol=1e-5)


@pytest.mark.parametrize("dtype,shards", [("bfloat16", 1), ("float32", 3)])
def test_bf16_and_sharded_gemma(tmp_path, dtype, shards):
    cfg = FAMILIES["gemma3"][1]
    weights = hf_weights(cfg, seed=3)
    fixtures.write_model(str(tmp_path), cfg=cfg, weights=weights, dtype=dtype, shards=shards)
    loaded = load_model(str(tmp_path)).float_weights()
    stored = {n: fixtures.bf16_round(w) if dtype == "bfloat16" else w for n, w in weights.items()}
    for name, w in stored.items():
        np.testing.assert_array_equal(loaded[name], w + np.float32(1.0 if is_norm(name) else 0.0), err_msg=name)


def _refused(tmp_path, cfg, match):
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError) as e:
        load_model(str(tmp_path))
    message = str(e.value)
    assert message.startswith(str(tmp_path / "config.json")) and match in message and "\n" not in message


@pytest.mark.parametrize("change,match", [
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope type 'yarn' is not supported"),
    ({"rope_scaling": {"type": "dynamic", "factor": 2.0}}, "'rope_scaling': rope type 'dynamic' is not supported"),
    ({"vision_config": {"hidden_size": 1152}}, "'vision_config': vision towers are not supported"),
    ({"model_type": "qwen2_moe"}, "model_type 'qwen2_moe' is not supported"),
    ({"model_type": "qwen3_moe"}, "model_type 'qwen3_moe' is not supported"),
    ({"model_type": "mixtral"}, "model_type 'mixtral' is not supported"),
    ({"attn_logit_softcapping": 50.0}, "'attn_logit_softcapping'"),
    ({"hidden_activation": "relu"}, "'hidden_activation' 'relu' is not the gemma3 family's MLP activation"),
])
def test_unsupported_variants_refused_naming_the_field(tmp_path, change, match):
    _refused(tmp_path, dict(FAMILIES["gemma3"][1], **change), match)


def test_gguf_rope_scaling_other_than_linear_refused(tmp_path, vocab):
    import gguf
    cfg = FAMILIES["qwen2"][1]
    path = str(tmp_path / "y.gguf")
    w = gguf.GGUFWriter(path, "qwen2")
    gguf_fixtures._metadata(w, cfg, vocab)
    w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
    gguf_fixtures._finish(w)
    with pytest.raises(ConfigError, match="'qwen2.rope.scaling.type' 'yarn' is not supported .supported: none, linear"):
        load_model(path)


def test_gguf_linear_rope_scaling(tmp_path, vocab):
    import gguf
    arch, cfg = FAMILIES["gemma3"]
    path = str(tmp_path / "l.gguf")
    w = gguf.GGUFWriter(path, arch)
    gguf_fixtures._metadata(w, cfg, vocab)
    w.add_key_length(16)
    w.add_value_length(16)
    w.add_sliding_window(8)
    w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
    w.add_rope_scaling_factor(8.0)
    gguf_fixtures._finish(w)
    from cold_ms.formats.gguf_loader import gguf_config, open_gguf
    c = gguf_config(open_gguf(path), path)
    assert c.rope_scaling == (("rope_type", "linear"), ("factor", 8.0))


@pytest.mark.parametrize("name", ["gemma3", "qwen3"])
def test_converted_directory_keeps_the_effective_norms(tmp_path, name):
    """scripts/convert.py writes the loaded weights (Gemma's norms already 1 + w) and the config;
    reading them back adds nothing."""
    from cold_ms.formats.convert import convert
    cfg = FAMILIES[name][1]
    fixtures.write_model(str(tmp_path / "hf"), cfg=cfg, weights=hf_weights(cfg, seed=5))
    original = load_model(str(tmp_path / "hf"))
    converted = load_model(convert(str(tmp_path / "hf"), str(tmp_path / "out")))
    assert converted.format == "mindspore ckpt"
    assert converted.config == original.config.__class__(**{**original.config.__dict__, "name": "out"})
    for n, w in original.weights.items():
        np.testing.assert_array_equal(converted.weights[n], w, err_msg=n)


@pytest.mark.parametrize("layers,scalar", [(62, 64 / 4), (26, 32.0)])
def test_gemma3_gguf_attention_scale_as_llama_cpp(tmp_path, vocab, layers, scalar):
    """llama.cpp: 1/sqrt(head_dim), but 1/sqrt(hidden / heads) for the 62-layer 27B."""
    import gguf
    from cold_ms.formats.gguf_loader import gguf_config, open_gguf
    cfg = dict(FAMILIES["gemma3"][1], num_hidden_layers=layers, hidden_size=64)
    path = str(tmp_path / "a.gguf")
    w = gguf.GGUFWriter(path, "gemma3")
    gguf_fixtures._metadata(w, cfg, vocab)
    w.add_key_length(32)
    w.add_value_length(32)
    w.add_sliding_window(512)
    gguf_fixtures._finish(w)
    c = gguf_config(open_gguf(path), path)
    assert (c.head_dim, c.query_pre_attn_scalar) == (32, scalar)
    assert [i for i, w in enumerate(c.layer_windows) if not w] == list(range(5, layers, 6))


@pytest.mark.parametrize("key,value,match", [
    ("attention.value_length", 24, "'qwen3.attention.value_length' differs from its key_length: not supported"),
    ("rope.dimension_count", 8, "'qwen3.rope.dimension_count': partial rotary embeddings are not supported"),
    ("attention.key_length", 0, "'qwen3.attention.key_length' must be a positive integer"),
])
def test_gguf_head_sizes_refused_naming_the_key(tmp_path, vocab, key, value, match):
    import gguf
    from cold_ms.formats.gguf_loader import gguf_config, open_gguf
    path = str(tmp_path / "h.gguf")
    w = gguf.GGUFWriter(path, "qwen3")
    gguf_fixtures._metadata(w, FAMILIES["qwen3"][1], vocab)
    for k, v in {"attention.key_length": 16, "attention.value_length": 16, key: value}.items():
        w.add_uint32(f"qwen3.{k}", v)
    gguf_fixtures._finish(w)
    with pytest.raises(ConfigError, match=match):
        gguf_config(open_gguf(path), path)
