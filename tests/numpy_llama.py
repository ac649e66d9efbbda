"""Independent numpy reference of LLaMA + LoRA + contrastive decoding (no cold_ms imports).

Written from the HF LLaMA / PEFT definitions, in float64, recomputing the full prefix
every step (no cache), so it shares no code or shortcut with the library under test.
"""
import numpy as np

PROJ = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
        "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}


def effective_weights(weights, adapter=None):
    """Base weights with an adapter merged: W + scaling * B @ A (PEFT's definition)."""
    w = {k: v.astype(np.float64) for k, v in weights.items()}
    if adapter is None:
        return w
    for key, a in adapter["tensors"].items():
        if ".lora_A." not in key:
            continue
        b = adapter["tensors"][key.replace(".lora_A.", ".lora_B.")]
        target = key.split("base_model.model.")[1].split(".lora_A.")[0] + ".weight"
        w[target] = w[target] + adapter["scaling"] * (b.astype(np.float64) @ a.astype(np.float64))
    return w


def _rmsnorm(x, weight, eps):
    return weight * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps))


def _rope(x, theta):
    """x (T, heads, D) at positions 0..T-1, rotate-half convention."""
    t, _, d = x.shape
    inv = 1.0 / theta ** (np.arange(0, d, 2) / d)
    ang = np.arange(t)[:, None] * inv[None, :]
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))
    rot = np.concatenate([-x[..., d // 2:], x[..., :d // 2]], -1)
    return x * cos[:, None, :] + rot * sin[:, None, :]


def forward(w, cfg, tokens):
    """Logits (T, V) of a full causal forward over `tokens`; cfg is the HF config dict."""
    h_n, kv_n = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d = cfg["hidden_size"] // h_n
    eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]
    x = w["model.embed_tokens.weight"][np.asarray(tokens)]
    t = len(tokens)
    causal = np.triu(np.full((t, t), -np.inf), 1)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        a = _rmsnorm(x, w[p + "input_layernorm.weight"], eps)
        q = _rope((a @ w[p + "self_attn.q_proj.weight"].T).reshape(t, h_n, d), theta)
        k = _rope((a @ w[p + "self_attn.k_proj.weight"].T).reshape(t, kv_n, d), theta)
        v = (a @ w[p + "self_attn.v_proj.weight"].T).reshape(t, kv_n, d)
        rep = h_n // kv_n
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
        s = np.einsum("thd,shd->hts", q, k) / np.sqrt(d) + causal
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        o = np.einsum("hts,shd->thd", s, v).reshape(t, h_n * d)
        x = x + o @ w[p + "self_attn.o_proj.weight"].T
        m = _rmsnorm(x, w[p + "post_attention_layernorm.weight"], eps)
        g = m @ w[p + "mlp.gate_proj.weight"].T
        x = x + ((g / (1 + np.exp(-g))) * (m @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
    x = _rmsnorm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    return x @ head.T


def cold_next(s_e, s_a, alpha, beta):
    """The contrastive choice for one step, straight from the definition."""
    valid = s_e >= np.log(alpha) + s_e.max()
    s = np.where(valid, (1 + beta) * s_e - beta * s_a, -np.inf)
    return int(np.argmax(s))  # numpy: first index among equal maxima


def generate(cfg, expert_w, amateur_w, prompt, n, alpha=0.1, beta=0.5, eos=None):
    """CoLD tokens (greedy when amateur_w is None), recomputing every prefix."""
    seq, out = list(prompt), []
    for _ in range(n):
        s_e = forward(expert_w, cfg, seq)[-1]
        tok = int(np.argmax(s_e)) if amateur_w is None else \
            cold_next(s_e, forward(amateur_w, cfg, seq)[-1], alpha, beta)
        out.append(tok)
        seq.append(tok)
        if eos is not None and tok == eos:
            break
    return out
