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


def round_to(x, dtype):
    """x as a 16-bit KV cache holds it, back in float64: float32 first (what the kernel computes),
    then float16 (numpy's cast: nearest even) or bfloat16 (the top 16 bits, nearest even on the
    rest; no NaN here); "float32" keeps the float32 value."""
    x = np.asarray(x, np.float32)
    if dtype == "float16":
        return x.astype(np.float16).astype(np.float64)
    if dtype == "bfloat16":
        bits = x.view(np.uint32).astype(np.uint64)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return bits.astype(np.uint32).view(np.float32).astype(np.float64)
    assert dtype == "float32", dtype
    return x.astype(np.float64)


def forward(w, cfg, tokens, kv_dtype=None):
    """Logits (T, V) of a full causal forward over `tokens`; cfg is the HF config dict; kv_dtype:
    keys (after rope) and values rounded as a KV cache of that dtype holds them (None: exact)."""
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
        if kv_dtype is not None:
            k, v = round_to(k, kv_dtype), round_to(v, kv_dtype)
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


def generate(cfg, expert_w, amateur_w, prompt, n, alpha=0.1, beta=0.5, eos=None, forward=forward):
    """CoLD tokens (greedy when amateur_w is None), recomputing every prefix with `forward` (this
    module's LLaMA, or another family's: numpy_families.forward)."""
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


def entropy(z):
    """Entropy in nats of softmax(z), in float64."""
    d = z.astype(np.float64) - z.max()
    e = np.exp(d)
    return np.log(e.sum()) - (e * d).sum() / e.sum()


def cold_choose(s_e, s_a, alpha, beta, schedule=0, temperature=0.0, top_p=1.0, u=0.0):
    """The next token from the definitions: the plausible set, beta or its entropy schedule
    (beta * H(p_a) / (H(p_e) + H(p_a))), then argmax, or a draw at u from softmax(score / T)
    over the set cut to its top-p nucleus (highest scores first, lower index first on ties)."""
    if schedule == 1:
        he, ha = entropy(s_e), entropy(s_a)
        beta = np.float32(beta * (ha / (he + ha) if he + ha > 0 else 0.5))
    beta = np.float32(beta)
    valid = s_e >= np.log(np.float32(alpha)) + s_e.max()
    scores = np.where(valid, (np.float32(1) + beta) * s_e - beta * s_a, -np.inf).astype(np.float32)
    if temperature <= 0:
        return int(np.argmax(scores))
    order = np.flatnonzero(valid)
    order = order[np.argsort(-scores[order], kind="stable")]
    q = np.exp((scores[order].astype(np.float64) - scores[order[0]]) / temperature)
    before = np.concatenate([[0.0], np.cumsum(q)[:-1]])
    keep = max(1, int(np.sum(before < top_p * q.sum())))
    acc = np.cumsum(q[:keep])
    return int(order[min(np.searchsorted(acc, u * acc[-1], side="right"), keep - 1)])
