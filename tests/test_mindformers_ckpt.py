"""MindFormers-named MindSpore checkpoints with their YAML, and scripts/convert.py."""
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

import fixtures
import numpy_llama as ref
from cold_ms.errors import CheckpointError
from cold_ms.formats.mindformers_ckpt import mindformers_config, to_mindformers_name
from helpers import all_logits, engine_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT = [1, 17, 42, 5, 88, 3, 60]


def write_mindformers(path, cfg, weights, extra=None):
    import mindspore as ms
    os.makedirs(path, exist_ok=True)
    params = [{"name": to_mindformers_name(n), "data": ms.Tensor(a)} for n, a in weights.items()]
    params.append({"name": "adam_m.model.norm_out.weight", "data": ms.Tensor(np.ones(cfg["hidden_size"], np.float32))})
    ms.save_checkpoint(params, os.path.join(path, "llama_tiny.ckpt"))
    model_config = {"type": "LlamaConfig", "hidden_size": cfg["hidden_size"], "num_layers": cfg["num_hidden_layers"],
                    "num_heads": cfg["num_attention_heads"], "n_kv_heads": cfg["num_key_value_heads"],
                    "vocab_size": cfg["vocab_size"], "intermediate_size": cfg["intermediate_size"],
                    "rms_norm_eps": cfg["rms_norm_eps"], "theta": cfg["rope_theta"], "seq_length": 128,
                    **(extra or {})}
    with open(os.path.join(path, "predict_llama_tiny.yaml"), "w") as f:
        yaml.safe_dump({"model": {"model_config": model_config, "arch": {"type": "LlamaForCausalLM"}}}, f)


def test_mindformers_checkpoint_and_yaml(tmp_path, tiny):
    write_mindformers(str(tmp_path / "mf"), tiny["cfg"], tiny["weights"])
    eng = engine_for(tiny, model_dir=str(tmp_path / "mf"))  # a directory holding the YAML
    want = ref.forward(ref.effective_weights(tiny["weights"]), tiny["cfg"], PROMPT)
    assert np.abs(all_logits(eng, PROMPT, -1) - want).max() < 5e-5
    assert eng.model.config.max_position_embeddings == 128


def test_mindformers_ffn_sizing_rule():
    # MindFormers' FeedForward: 4*d -> int(2/3 *) -> round up to multiple_of
    cfg = mindformers_config({"hidden_size": 4096, "num_layers": 1, "num_heads": 32, "multiple_of": 256})
    assert cfg.intermediate_size == 11008  # LLaMA-7B
    cfg = mindformers_config({"hidden_size": 8192, "num_layers": 1, "num_heads": 64, "n_kv_heads": 8,
                              "multiple_of": 4096, "ffn_dim_multiplier": 1.3})
    assert cfg.intermediate_size == 28672 and cfg.num_kv_heads == 8  # LLaMA-2-70B


def test_corrupt_mindspore_checkpoint(tmp_path, tiny):
    write_mindformers(str(tmp_path / "mf"), tiny["cfg"], tiny["weights"])
    ckpt = tmp_path / "mf" / "llama_tiny.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        engine_for(tiny, model_dir=str(tmp_path / "mf"))


@pytest.mark.parametrize("source", ["hf", "mindformers"])
def test_convert_roundtrip(tmp_path, tiny, source):
    src = tiny["model_dir"]
    if source == "mindformers":
        write_mindformers(str(tmp_path / "mf"), tiny["cfg"], tiny["weights"])
        src = str(tmp_path / "mf" / "predict_llama_tiny.yaml")
    out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "convert.py"), "--model", src,
                          "--out", str(tmp_path / "conv")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    eng = engine_for(tiny, model_dir=str(tmp_path / "conv"))
    want = ref.forward(ref.effective_weights(tiny["weights"]), tiny["cfg"], PROMPT)
    assert np.abs(all_logits(eng, PROMPT, -1) - want).max() < 5e-5
    if source == "hf":  # the sentencepiece tokenizer travels with the model
        assert eng.model.tokenizer.encode("Paris") == engine_for(tiny).model.tokenizer.encode("Paris")
    again = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "convert.py"), "--model", src,
                            "--out", str(tmp_path / "conv")], capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "already holds a model" in again.stderr
