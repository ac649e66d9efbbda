"""Random checkpoints in HF / PEFT format for benchmarks (no download needed): LLaMA sizes, and
the published shapes of the families users fine-tune, each with its own config.json fields and
tensors (q/k/v biases, q/k norms, Gemma's four norms stored as w for its 1 + w)."""
import json
import os

import numpy as np
from safetensors.numpy import save_file

from cold_ms.formats.names import expected_shapes, is_norm, module_dims, module_path
from cold_ms.config import ModelConfig

_LLAMA = dict(model_type="llama", rms_norm_eps=1e-5, rope_theta=10000.0, max_position_embeddings=2048,
              bos_token_id=1, eos_token_id=2)
_QWEN = dict(rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True, bos_token_id=151643,
             eos_token_id=151645, vocab_size=151936, hidden_act="silu", use_sliding_window=False)
SIZES = {
    # ~98M parameters: LLaMA layout with GQA and tied embeddings
    "100m": dict(_LLAMA, vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                 num_attention_heads=12, num_key_value_heads=4, tie_word_embeddings=True),
    # ~853M parameters (float32: 3.4 GB), the regime where the weights dominate the process
    "1b": dict(_LLAMA, vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=16,
               num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=False),
    # LLaMA-2-7B's shape (6.74B parameters), the paper's model; used by `bench.py memory`, which
    # needs only the config (writing its random weights would take 27 GB of float32)
    "7b": dict(_LLAMA, vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
               num_attention_heads=32, num_key_value_heads=32, tie_word_embeddings=False,
               max_position_embeddings=4096),
    "tiny": dict(_LLAMA, vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False),
    # The published shapes (each model's config.json on the HF hub)
    "qwen2.5-0.5b": dict(_QWEN, model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                         max_window_layers=21, sliding_window=32768),
    "qwen3-0.6b": dict(_QWEN, model_type="qwen3", hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                       num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960),
    "gemma3-1b": dict(model_type="gemma3_text", vocab_size=262144, hidden_size=1152, intermediate_size=6912,
                      num_hidden_layers=26, num_attention_heads=4, num_key_value_heads=1, head_dim=256,
                      rms_norm_eps=1e-6, rope_theta=1000000.0, rope_local_base_freq=10000.0, sliding_window=512,
                      sliding_window_pattern=6, query_pre_attn_scalar=256, max_position_embeddings=32768,
                      tie_word_embeddings=True, bos_token_id=2, eos_token_id=[1, 106],
                      hidden_activation="gelu_pytorch_tanh"),
    "llama3.2-1b": dict(model_type="llama", vocab_size=128256, hidden_size=2048, intermediate_size=8192,
                        num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8, head_dim=64,
                        rms_norm_eps=1e-5, rope_theta=500000.0, max_position_embeddings=131072,
                        rope_scaling=dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                          original_max_position_embeddings=8192),
                        tie_word_embeddings=True, bos_token_id=128000, eos_token_id=[128001, 128008, 128009],
                        hidden_act="silu"),
}


def _hf_config(size):
    return dict(SIZES[size])


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
        if is_norm(name):  # effective scales near 1, stored as the family stores them
            w = 1.0 - cfg.arch.norm_offset + 0.02 * rng.standard_normal(shape)
        elif len(shape) == 1:  # biases
            w = 0.02 * rng.standard_normal(shape)
        else:
            w = rng.standard_normal(shape) / np.sqrt(shape[-1])
        weights[name] = w.astype(np.float32)
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
