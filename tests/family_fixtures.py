"""Tiny random checkpoints of each family cold_ms runs besides LLaMA, in HF layout (config.json +
safetensors), with every tensor the family's HF model has (biases, q/k norms, sandwich norms).

CONFIGS / write_family_model: the model tests' checkpoints (every family difference at once);
FAMILIES / hf_weights: the format tests' (each with its GGUF architecture)."""
import numpy as np

import fixtures
from cold_ms.config import ModelConfig
from cold_ms.formats.names import expected_shapes, is_norm

_BASE = dict(fixtures.TINY, vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6)
CONFIGS = {
    # biases on q, k, v; tied embeddings; Qwen's rope base
    "qwen2": dict(_BASE, model_type="qwen2", rope_theta=1e6, tie_word_embeddings=True, hidden_act="silu",
                  sliding_window=4096, use_sliding_window=False, max_window_layers=2),
    # per-head q/k norms; head_dim (16) independent of hidden / heads (8)
    "qwen3": dict(_BASE, model_type="qwen3", rope_theta=1e6, head_dim=16, tie_word_embeddings=True),
    # every family difference at once: 3 layers, the first two sliding (window 4) with the local rope
    # base, the third global with linear rope scaling; the attention scale apart from head_dim; a soft-cap
    "gemma3": dict(_BASE, model_type="gemma3_text", num_hidden_layers=3, num_attention_heads=2,
                   num_key_value_heads=1, head_dim=16, hidden_activation="gelu_pytorch_tanh",
                   query_pre_attn_scalar=12, sliding_window=4, sliding_window_pattern=3, rope_theta=1e6,
                   rope_local_base_freq=10000.0, rope_scaling={"rope_type": "linear", "factor": 2.0},
                   final_logit_softcapping=8.0, tie_word_embeddings=True),
    # Llama 3.1's rope scaling, at a head size where it touches scaled, blended and kept frequencies
    "llama3": dict(_BASE, rope_theta=500000.0, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                   rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
    # Mistral's sliding window on every layer
    "mistral": dict(_BASE, model_type="mistral", sliding_window=5),
}


def family_weights(cfg, seed=0):
    """HF-named float32 weights of `cfg`: fixtures.random_weights plus the family's extra tensors."""
    w = fixtures.random_weights(cfg, seed)
    rng = np.random.default_rng(seed + 100)
    d, hd = cfg["hidden_size"], cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        if cfg["model_type"] == "qwen2":
            for m, heads in (("q_proj", cfg["num_attention_heads"]), ("k_proj", cfg["num_key_value_heads"]),
                             ("v_proj", cfg["num_key_value_heads"])):
                w[p + f"self_attn.{m}.bias"] = (0.5 * rng.standard_normal(heads * hd)).astype(np.float32)
        if cfg["model_type"] in ("qwen3", "gemma3_text"):
            centre = 0.0 if cfg["model_type"] == "gemma3_text" else 1.0  # Gemma stores w of (1 + w)
            for m in ("q_norm", "k_norm"):
                w[p + f"self_attn.{m}.weight"] = (centre + 0.2 * rng.standard_normal(hd)).astype(np.float32)
        if cfg["model_type"] == "gemma3_text":
            for m in ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                      "post_feedforward_layernorm"):
                w[p + m + ".weight"] = (0.2 * rng.standard_normal(d)).astype(np.float32)
    if cfg["model_type"] == "gemma3_text":
        w["model.norm.weight"] = (0.2 * rng.standard_normal(d)).astype(np.float32)
    return w


def write_family_model(path, name, seed=0, dtype="float32"):
    """A HF model directory of family `name` (CONFIGS); returns (cfg, weights as stored, float32)."""
    cfg = CONFIGS[name]
    return fixtures.write_model(path, cfg=cfg, seed=seed, dtype=dtype, weights=family_weights(cfg, seed))

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
