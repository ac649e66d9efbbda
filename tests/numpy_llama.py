"""Independent numpy reference of LLaMA + LoRA + contrastive decoding (no cold_ms imports).

Written from the HF LLaMA / PEFT definitions, in float64, recomputing the full prefix
every step (no cache), so it shares no code or shortcut with the library under test.

half=True mimics a float16 model (HF's torch_dtype=float16, the Cells' --dtype float16): every
weight and every tensor a layer hands on (projection outputs, rope terms, attention scores and
probabilities, norm outputs, the residual stream, logits) is rounded to float16, while the norm
statistics and the softmax stay exact; rounding is what the option adds, the maths is the same.
"""
import numpy as np

PROJ = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
        "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}


def rounding(half):
    """The rounding of a float16 model's tensors (half), or none."""
    return (lambda a: np.asarray(a).astype(np.float16).astype(np.float64)) if half else \
        (lambda a: np.asarray(a, np.float64))


def effective_weights(weights, adapter=None, half=False):
    """Base weights with an adapter merged: W + scaling * B @ A (PEFT's definition). half: W, A and
    scaling * B each rounded to float16 first (the stacks a float16 model holds)."""
    r = rounding(half)
    w = {k: r(v) for k, v in weights.items()}
    if adapter is None:
        return w
    for key, a in adapter["tensors"].items():
        if ".lora_A." not in key:
            continue
        b = adapter["tensors"][key.replace(".lora_A.", ".lora_B.")]
        target = key.split("base_model.model.")[1].split(".lora_A.")[0] + ".weight"
        w[target] = w[target] + r(adapter["scaling"] * b.astype(np.float64)) @ r(a)
    return w


def _rmsnorm(x, weight, eps, r=rounding(False)):
    return r(weight * r(x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)))


def _rope(x, theta, r=rounding(False)):
    """x (T, heads, D) at positions 0..T-1, rotate-half convention."""
    t, _, d = x.shape
    inv = 1.0 / theta ** (np.arange(0, d, 2) / d)
    ang = np.arange(t)[:, None] * inv[None, :]
    cos, sin = r(np.cos(np.concatenate([ang, ang], -1))), r(np.sin(np.concatenate([ang, ang], -1)))
    rot = np.concatenate([-x[..., d // 2:], x[..., :d // 2]], -1)
    return r(r(x * cos[:, None, :]) + r(rot * sin[:, None, :]))


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


def forward(w, cfg, tokens, kv_dtype=None, half=False):
    """Logits (T, V) of a full causal forward over `tokens`; cfg is the HF config dict; kv_dtype:
    keys (after rope) and values rounded as a KV cache of that dtype holds them (None: exact); half:
    see the module docstring (w as effective_weights(..., half=True) gives it)."""
    r = rounding(half)
    h_n, kv_n = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d = cfg["hidden_size"] // h_n
    eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]
    x = w["model.embed_tokens.weight"][np.asarray(tokens)]
    t = len(tokens)
    causal = np.triu(np.full((t, t), -np.inf), 1)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        a = _rmsnorm(x, w[p + "input_layernorm.weight"], eps, r)
        q = _rope(r(a @ w[p + "self_attn.q_proj.weight"].T).reshape(t, h_n, d), theta, r)
        k = _rope(r(a @ w[p + "self_attn.k_proj.weight"].T).reshape(t, kv_n, d), theta, r)
        v = r(a @ w[p + "self_attn.v_proj.weight"].T).reshape(t, kv_n, d)
        if kv_dtype is not None:
            k, v = round_to(k, kv_dtype), round_to(v, kv_dtype)
        rep = h_n // kv_n
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
        s = r(np.einsum("thd,shd->hts", q, k)) / np.sqrt(d) + causal
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        o = r(np.einsum("hts,shd->thd", r(s), v)).reshape(t, h_n * d)
        x = r(x + r(o @ w[p + "self_attn.o_proj.weight"].T))
        m = _rmsnorm(x, w[p + "post_attention_layernorm.weight"], eps, r)
        g = r(m @ w[p + "mlp.gate_proj.weight"].T)
        gated = r(r(g / (1 + np.exp(-g))) * r(m @ w[p + "mlp.up_proj.weight"].T))
        x = r(x + r(gated @ w[p + "mlp.down_proj.weight"].T))
    x = _rmsnorm(x, w["model.norm.weight"], eps, r)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    return r(x @ head.T)


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
