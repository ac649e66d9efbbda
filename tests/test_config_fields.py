"""Every config field a loader reads from a file is type- and range-checked in one place per
format, and a bad one is refused with a ConfigError naming the file and the field."""
import json
import math

import gguf
import pytest
import yaml

import fixtures
from cold_ms.config import ModelConfig
from cold_ms.errors import AdapterError, CheckpointError, ColdError, ConfigError
from cold_ms.formats.adapters import adapter_config
from cold_ms.fields import Fields
from cold_ms.formats.gguf_loader import gguf_config, open_gguf
from cold_ms.formats.mindformers_ckpt import load_mindformers, mindformers_config
from cold_ms.formats.model import load_model


def test_fields_reads_types_and_ranges():
    f = Fields({"n": 3, "x": 2, "flag": True, "s": "a", "ids": [1, 2], "none": None}, "f.json")
    assert (f.int("n"), f.number("x"), f.flag("flag"), f.text("s"), f.token_ids("ids")) == (3, 2.0, True, "a", (1, 2))
    assert (f.int("none", 7), f.int("absent", None), f.token_ids("absent")) == (7, None, ())
    assert f.section("absent").doc == {}
    for call, match in [(lambda: f.int("absent"), "'absent' is missing"),
                        (lambda: f.int("flag"), "'flag' must be a positive integer, got True"),
                        (lambda: f.int("x", minimum=5), "'x' must be an integer >= 5"),
                        (lambda: f.flag("n"), "'n' must be true or false"),
                        (lambda: f.text("n"), "'n' must be a string"),
                        (lambda: f.section("s"), "'s' must be a mapping")]:
        with pytest.raises(ConfigError, match="^f.json: " + match):
            call()
    for bad in (0, -1.0, math.nan, math.inf, "1e-5", True):
        with pytest.raises(ConfigError, match="'v' must be a finite number > 0"):
            Fields({"v": bad}, "f.json").number("v")
    with pytest.raises(ConfigError, match="write it as a number"):
        Fields({"v": "1e-5"}, "f.yaml").number("v")
    with pytest.raises(ConfigError, match="token ids"):
        Fields({"eos": [2, "x"]}, "f.json").token_ids("eos")


@pytest.mark.parametrize("doc,match", [
    ([1, 2], "expected a JSON object of named fields, got a list"),
    (dict(fixtures.TINY, vocab_size="big"), "'vocab_size' must be a positive integer, got the string 'big'"),
    (dict(fixtures.TINY, hidden_size=32.5), "'hidden_size' must be a positive integer"),
    (dict(fixtures.TINY, num_hidden_layers=0), "'num_hidden_layers' must be a positive integer"),
    (dict(fixtures.TINY, rms_norm_eps=float("nan")), "'rms_norm_eps' must be a finite number > 0"),
    (dict(fixtures.TINY, rope_theta=-1), "'rope_theta' must be a finite number > 0"),
    (dict(fixtures.TINY, tie_word_embeddings="no"), "'tie_word_embeddings' must be true or false"),
    (dict(fixtures.TINY, eos_token_id="2"), "'eos_token_id' must be a token id"),
    (dict(fixtures.TINY, bos_token_id=-1), "'bos_token_id' must be an integer >= 0"),
    (dict(fixtures.TINY, rope_scaling="linear"), "'rope_scaling' must be a mapping"),
    (dict(fixtures.TINY, model_type=["llama"]), "'model_type' must be a string"),
    ({k: v for k, v in fixtures.TINY.items() if k != "intermediate_size"}, "'intermediate_size' is missing"),
    (dict(fixtures.TINY, num_key_value_heads=3), "num_heads=4 is not a multiple of num_kv_heads=3"),
])
def test_hf_config_json(tmp_path, doc, match):
    fixtures.write_model(str(tmp_path / "m"))
    (tmp_path / "m" / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError) as e:
        load_model(str(tmp_path / "m"))
    assert str(e.value).startswith(str(tmp_path / "m" / "config.json") + ": ") and match in str(e.value)


def test_hf_config_accepts_nulls_and_transformers5_spellings():
    cfg = ModelConfig.from_hf(dict(fixtures.TINY, num_key_value_heads=None, head_dim=None, eos_token_id=[2, 3],
                                   rope_parameters={"rope_type": "default", "rope_theta": 500.0}))
    assert (cfg.num_kv_heads, cfg.head_dim, cfg.eos_token_ids, cfg.rope_theta) == (4, 8, (2, 3), 500.0)


def test_sharded_index_weight_map(tmp_path):
    fixtures.write_model(str(tmp_path / "m"), shards=2)
    index = tmp_path / "m" / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"model.norm.weight": 5}}))
    with pytest.raises(ConfigError, match="'weight_map': 'model.norm.weight' must be a string"):
        load_model(str(tmp_path / "m"))
    index.write_text("[]")
    with pytest.raises(ConfigError, match="index.json: expected a JSON object"):
        load_model(str(tmp_path / "m"))


@pytest.mark.parametrize("change,match", [
    ([1, 2], "expected a JSON object of named fields, got a list"),
    ({"lora_alpha": "abc"}, "'lora_alpha' must be a finite number > 0, got the string 'abc'"),
    ({"lora_alpha": None}, None), ({"r": 0}, "'r' must be a positive integer"),
    ({"r": "8"}, "'r' must be a positive integer"), ({"use_rslora": "yes"}, "'use_rslora' must be true or false"),
    ({"peft_type": "IA3"}, "peft_type IA3 is not LoRA"), ({"use_dora": True}, "DoRA adapters are not supported"),
    ({"rank_pattern": {"q_proj": 4}}, "rank_pattern/alpha_pattern is not supported"),
    ({"modules_to_save": ["lm_head"]}, "modules_to_save are not supported"),
])
def test_adapter_config_json(tmp_path, change, match):
    fixtures.write_adapter(str(tmp_path), fixtures.TINY, rank=4, alpha=8)
    path = tmp_path / "adapter_config.json"
    doc = change if isinstance(change, list) else dict(json.loads(path.read_text()), **change)
    path.write_text(json.dumps(doc))
    if match is None:  # lora_alpha: null means PEFT's default, alpha = r
        assert adapter_config(str(tmp_path)) == (4, 1.0)
        return
    with pytest.raises(ColdError) as e:
        adapter_config(str(tmp_path))
    assert str(e.value).startswith(str(path) + ": ") and match in str(e.value)


def test_adapter_path_must_be_a_directory(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(AdapterError, match="is a file, not a PEFT LoRA adapter directory"):
        adapter_config(str(tmp_path / "file"))
    with pytest.raises(AdapterError, match="does not exist"):
        adapter_config(str(tmp_path / "nothing"))


def _gguf(path, **metadata):
    w = gguf.GGUFWriter(str(path), "llama")
    values = {"block_count": 2, "embedding_length": 32, "feed_forward_length": 48, "attention.head_count": 4,
              "vocab_size": 96, **metadata}
    for key, value in values.items():
        if value is not None:
            (w.add_string if isinstance(value, str) else w.add_uint32 if isinstance(value, int)
             else w.add_float32)(f"llama.{key}", value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return open_gguf(str(path))


@pytest.mark.parametrize("metadata,match", [
    ({"attention.head_count": "four"}, "'llama.attention.head_count' must be a positive integer, got the string"),
    ({"block_count": 0}, "'llama.block_count' must be a positive integer"),
    ({"feed_forward_length": None}, "'llama.feed_forward_length' is missing"),
    ({"attention.layer_norm_rms_epsilon": -1.0}, "'llama.attention.layer_norm_rms_epsilon' must be a finite number"),
    ({"rope.dimension_count": 4}, "partial rotary embeddings are not supported"),
    ({"attention.head_count_kv": 3}, "num_heads=4 is not a multiple of num_kv_heads=3"),
])
def test_gguf_metadata(tmp_path, metadata, match):
    reader = _gguf(tmp_path / "m.gguf", **metadata)
    with pytest.raises(ConfigError) as e:
        gguf_config(reader, "m.gguf")
    assert str(e.value).startswith("m.gguf: ") and match in str(e.value)


def test_gguf_metadata_read(tmp_path):
    cfg = gguf_config(_gguf(tmp_path / "m.gguf", **{"attention.head_count_kv": 2}), "m.gguf")
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.vocab_size) == (2, 32, 4, 2, 96)


@pytest.mark.parametrize("change,match", [
    ({"num_heads": "4"}, "model.model_config: 'num_heads' must be a positive integer, got the string '4'"),
    ({"rms_norm_eps": "1e-5"}, "'rms_norm_eps' must be a finite number > 0, got the string '1e-5' (write it"),
    ({"qkv_concat": "False"}, "'qkv_concat' must be true or false"),
    ({"eos_token_id": [2, None]}, "'eos_token_id' must be a token id"),
    ({"theta": 0}, "'theta' must be a finite number > 0"),
])
def test_mindformers_yaml(tmp_path, change, match):
    mc = {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "n_kv_heads": 2, "vocab_size": 96,
          "intermediate_size": 48, **change}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"model": {"model_config": mc}}))
    with pytest.raises(ConfigError) as e:
        load_mindformers(str(path))
    assert str(e.value).startswith(f"{path}: ") and match in str(e.value)


def test_mindformers_yaml_shape():
    with pytest.raises(ConfigError, match="expected a mapping of named fields, got a list"):
        mindformers_config([1])
    cfg = mindformers_config({"hidden_size": 64, "num_layers": 1, "num_heads": 4, "eos_token_id": [2, 7],
                              "n_kv_heads": None, "ffn_dim_multiplier": 1.3})
    assert (cfg.num_kv_heads, cfg.eos_token_ids, cfg.intermediate_size) == (4, (2, 7), 256)


def test_mindformers_yaml_load_checkpoint_must_be_a_path(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"load_checkpoint": 3, "model": {"model_config": {
        "hidden_size": 32, "num_layers": 2, "num_heads": 4, "vocab_size": 96, "intermediate_size": 48}}}))
    with pytest.raises(ConfigError, match="'load_checkpoint' must be a string"):
        load_mindformers(str(path))
    path.write_text("model: [1]")
    with pytest.raises(CheckpointError, match="no model.model_config section"):
        load_mindformers(str(path))
