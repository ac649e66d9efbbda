"""Tiny HF configs of each model family and random weights for them, as HF stores them."""
import numpy as np

from cold_ms.config import ModelConfig
from cold_ms.formats.names import expected_shapes, is_norm

_BASE = {"vocab_size": 300, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "max_position_embeddings": 64,
         "bos_token_id": 1, "eos_token_id": 2}
FAMILIES = {  # (GGUF architecture, HF config.json)
    "qwen2": ("qwen2", dict(_BASE, model_type="qwen2", rope_theta=1000000.0, tie_word_embeddings=True)),
    "qwen3": ("qwen3", dict(_BASE, model_type="qwen3", rope_theta=1000000.0, head_dim=16, tie_word_embeddings=False)),
    # six layers: llama.cpp makes the sixth global, as HF's sliding_window_pattern 6 does
    "gemma3": ("gemma3", dict(_BASE, model_type="gemma3_text", num_hidden_layers=6, head_dim=16, rope_theta=1000000.0,
                              rope_local_base_freq=10000.0, sliding_window=8, query_pre_attn_scalar=16,
                              hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True)),
    "llama3.1": ("llama", dict(_BASE, model_type="llama", rope_theta=500000.0, tie_word_embeddings=False,
                               rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                             "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})),
}


def hf_weights(cfg, seed=0):
    """Random weights in HF names/layout, norms as HF stores them (Gemma: w for its 1 + w)."""
    rng = np.random.default_rng(seed)
    model = ModelConfig.from_hf(cfg)
    out = {}
    for name, shape in expected_shapes(model).items():
        w = rng.standard_normal(shape) * (0.1 if len(shape) == 1 else 1 / np.sqrt(shape[-1]))
        out[name] = (w + (1 - model.arch.norm_offset if is_norm(name) else 0)).astype(np.float32)
    return out
