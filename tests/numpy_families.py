"""Independent numpy references of the Qwen2, Qwen3, Gemma 3 and Llama 3.x decoders (no cold_ms
imports), written from the HF modelling code's equations, in float64, recomputing the full prefix
every step (no cache). Reads a HF config.json dict and HF-named weights as the checkpoint stores
them (Gemma's norm weights w, scaled by 1 + w here).

    Qwen2  (modeling_qwen2):  LLaMA + biases on q, k, v
    Qwen3  (modeling_qwen3):  LLaMA + RMSNorm over each head of q and k before rope; head_dim free
    Gemma3 (modeling_gemma3): embeddings * sqrt(hidden); norms scale by (1 + w); q/k norms; sandwich
        norms (post_attention_layernorm on the attention output, pre_/post_feedforward_layernorm
        around the MLP); GeGLU with tanh gelu; scores * query_pre_attn_scalar^-1/2; sliding-window
        layers (a query at p sees keys p - w < j <= p) with their own rope base; final soft-cap
    Llama 3.1 (modeling_rope_utils._compute_llama3_parameters): rope frequencies rescaled
"""
import numpy as np

import numpy_llama
from numpy_llama import effective_weights  # noqa: F401  (the same PEFT merge)

SLIDING = "sliding_attention"


def family(cfg):
    return {"qwen2": "qwen2", "qwen3": "qwen3", "gemma3_text": "gemma3"}.get(cfg["model_type"], "llama")


def layer_types(cfg):
    if cfg.get("layer_types"):
        return list(cfg["layer_types"])
    n = cfg["num_hidden_layers"]
    if family(cfg) == "gemma3":
        pattern = cfg.get("sliding_window_pattern", 6)
        return [SLIDING if (i + 1) % pattern else "full_attention" for i in range(n)]
    if family(cfg) in ("qwen2", "qwen3"):  # the window counts only with use_sliding_window, from max_window_layers
        return [SLIDING if cfg.get("use_sliding_window") and i >= cfg.get("max_window_layers", n)
                else "full_attention" for i in range(n)]
    return [SLIDING if cfg.get("sliding_window") else "full_attention"] * n


def inv_freq(cfg, local):
    d = head_dim(cfg)
    theta = cfg.get("rope_local_base_freq", 10000.0) if local else cfg["rope_theta"]
    freq = 1.0 / theta ** (np.arange(0, d, 2) / d)
    scaling = cfg.get("rope_scaling") or {}
    kind = scaling.get("rope_type", "default")
    if local or kind == "default":
        return freq
    if kind == "linear":
        return freq / scaling["factor"]
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old = scaling["original_max_position_embeddings"]
    out = []
    for f in freq:  # llama3: one frequency at a time, as the definition reads
        wavelen = 2 * np.pi / f
        if wavelen < old / high:
            out.append(f)
        elif wavelen > old / low:
            out.append(f / factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append((1 - smooth) * f / factor + smooth * f)
    return np.array(out)


def head_dim(cfg):
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def _rmsnorm(x, weight, eps, offset):
    return (offset + weight) * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps))


def _rope(x, freq):
    """x (T, heads, D) at positions 0..T-1, rotate-half convention."""
    t, d = x.shape[0], x.shape[-1]
    ang = np.arange(t)[:, None] * freq[None, :]
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))
    rot = np.concatenate([-x[..., d // 2:], x[..., :d // 2]], -1)
    return x * cos[:, None, :] + rot * sin[:, None, :]


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def _attention(w, cfg, p, a, t, local, window):
    fam, d = family(cfg), head_dim(cfg)
    h_n, kv_n, eps = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["rms_norm_eps"]
    offset = 1.0 if fam == "gemma3" else 0.0

    def proj(m, heads):
        y = a @ w[p + f"self_attn.{m}.weight"].T
        if fam == "qwen2":
            y = y + w[p + f"self_attn.{m}.bias"]
        return y.reshape(t, heads, d)

    q, k, v = proj("q_proj", h_n), proj("k_proj", kv_n), proj("v_proj", kv_n)
    if fam in ("qwen3", "gemma3"):
        q = _rmsnorm(q, w[p + "self_attn.q_norm.weight"], eps, offset)
        k = _rmsnorm(k, w[p + "self_attn.k_norm.weight"], eps, offset)
    freq = inv_freq(cfg, local)
    q, k = _rope(q, freq), _rope(k, freq)
    k, v = np.repeat(k, h_n // kv_n, axis=1), np.repeat(v, h_n // kv_n, axis=1)
    scale = cfg.get("query_pre_attn_scalar", d) ** -0.5 if fam == "gemma3" else d ** -0.5
    qi, kj = np.arange(t)[:, None], np.arange(t)[None, :]
    hidden = (kj > qi) | ((qi - kj >= window) if window else False)
    s = np.einsum("thd,shd->hts", q, k) * scale + np.where(hidden, -np.inf, 0.0)
    s = np.exp(s - s.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    return np.einsum("hts,shd->thd", s, v).reshape(t, h_n * d) @ w[p + "self_attn.o_proj.weight"].T


def forward(w, cfg, tokens):
    """Logits (T, V) of a full causal forward over `tokens`; cfg is the HF config dict."""
    fam, eps = family(cfg), cfg["rms_norm_eps"]
    offset = 1.0 if fam == "gemma3" else 0.0
    x = w["model.embed_tokens.weight"][np.asarray(tokens)]
    if fam == "gemma3":
        x = x * np.sqrt(cfg["hidden_size"])
    t = len(tokens)
    for i, kind in enumerate(layer_types(cfg)):
        p = f"model.layers.{i}."
        window = cfg.get("sliding_window") if kind == SLIDING else 0
        local = fam == "gemma3" and kind == SLIDING
        norm = lambda name, y: _rmsnorm(y, w[p + name + ".weight"], eps, offset)  # noqa: E731
        attn = _attention(w, cfg, p, norm("input_layernorm", x), t, local, window)
        if fam == "gemma3":
            x = x + norm("post_attention_layernorm", attn)
            m = norm("pre_feedforward_layernorm", x)
        else:
            x = x + attn
            m = norm("post_attention_layernorm", x)
        g = m @ w[p + "mlp.gate_proj.weight"].T
        g = _gelu_tanh(g) if fam == "gemma3" else g / (1 + np.exp(-g))
        y = (g * (m @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
        x = x + (norm("post_feedforward_layernorm", y) if fam == "gemma3" else y)
    x = _rmsnorm(x, w["model.norm.weight"], eps, offset)
    tied = cfg.get("tie_word_embeddings", fam == "gemma3")
    logits = x @ (w["model.embed_tokens.weight"] if tied else w["lm_head.weight"]).T
    cap = cfg.get("final_logit_softcapping")
    return np.tanh(logits / cap) * cap if cap else logits


def generate(cfg, expert_w, amateur_w, prompt, n, alpha=0.1, beta=0.5, eos=None):
    """CoLD tokens (greedy when amateur_w is None) of the family's forward, recomputing every prefix."""
    return numpy_llama.generate(cfg, expert_w, amateur_w, prompt, n, alpha, beta, eos, forward=forward)
