"""Random LLaMA checkpoints in HF / PEFT format for benchmarks (no download needed)."""
import json
import os

import numpy as np
from safetensors.numpy import save_file

from cold_ms.formats.names import expected_shapes, module_dims, module_path
from cold_ms.config import ModelConfig

SIZES = {
    # ~98M parameters: LLaMA layout with GQA and tied embeddings
    "100m": dict(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                 num_attention_heads=12, num_key_value_heads=4, tie_word_embeddings=True),
    # ~853M parameters (float32: 3.4 GB), the regime where the weights dominate the process
    "1b": dict(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=16,
               num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=False),
    "tiny": dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False),
}


def _hf_config(size):
    return dict(SIZES[size], model_type="llama", rms_norm_eps=1e-5, rope_theta=10000.0,
                max_position_embeddings=2048, bos_token_id=1, eos_token_id=2)


def write_random_checkpoint(root, size):
    """A random model of `size` and a random r=16 LoRA for it under root: (model dir, adapter dir)."""
    model_dir = write_random_model(os.path.join(root, "model"), size)
    return model_dir, write_random_adapter(os.path.join(root, "lora"), ModelConfig.from_hf(_hf_config(size)))


def write_random_model(path, size="100m", seed=0):
    """Write config.json + model.safetensors; returns the directory."""
    hf = _hf_config(size)
    cfg = ModelConfig.from_hf(hf)
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in expected_shapes(cfg).items():
        std = 1.0 if len(shape) == 1 else 1.0 / np.sqrt(shape[-1])
        weights[name] = (1.0 + 0.02 * rng.standard_normal(shape) if len(shape) == 1
                         else rng.standard_normal(shape) * std).astype(np.float32)
    os.makedirs(path, exist_ok=True)
    save_file(weights, os.path.join(path, "model.safetensors"))
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(hf, f)
    return path


def write_random_adapter(path, cfg, rank=16, targets=("q_proj", "k_proj", "v_proj", "o_proj",
                                                        "gate_proj", "up_proj", "down_proj"), seed=1):
    rng = np.random.default_rng(seed)
    tensors = {}
    for layer in range(cfg.num_layers):
        for m in targets:
            n_in, n_out = module_dims(cfg, m)
            base = "base_model.model." + module_path(layer, m)
            tensors[base + ".lora_A.weight"] = (rng.standard_normal((rank, n_in)) / np.sqrt(n_in)).astype(np.float32)
            tensors[base + ".lora_B.weight"] = (rng.standard_normal((n_out, rank)) * 0.01).astype(np.float32)
    os.makedirs(path, exist_ok=True)
    save_file(tensors, os.path.join(path, "adapter_model.safetensors"))
    with open(os.path.join(path, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank,
                   "target_modules": list(targets), "bias": "none"}, f)
    return path
