"""Grouped-query attention over the static KV cache, one position per token and row; with the
family's q/k/v biases and per-head q/k RMSNorms (before rope), scaled by cfg.attn_scale."""
from mindspore import nn, ops

from cold_ms.cells.kv_cache import KVCache
from cold_ms.cells.norm import RMSNorm
from cold_ms.cells.lora_linear import target_linear
from cold_ms.cells.rope import apply_rotary


class Attention(nn.Cell):
    def __init__(self, cfg, spec, rows, length):
        super().__init__()
        d, hd = cfg.hidden_size, cfg.head_dim
        self.heads, self.kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, hd
        self.group = cfg.num_heads // cfg.num_kv_heads
        self.scale = cfg.attn_scale
        bias = cfg.arch.qkv_bias
        self.q_proj = target_linear("q_proj", d, self.heads * hd, spec, bias)
        self.k_proj = target_linear("k_proj", d, self.kv_heads * hd, spec, bias)
        self.v_proj = target_linear("v_proj", d, self.kv_heads * hd, spec, bias)
        self.qk_norm = cfg.arch.qk_norm
        if self.qk_norm:
            self.q_norm = RMSNorm(hd, cfg.rms_norm_eps, spec.backend)
            self.k_norm = RMSNorm(hd, cfg.rms_norm_eps, spec.backend)
        self.o_proj = target_linear("o_proj", self.heads * hd, d, spec)
        self.cache = KVCache(rows, self.kv_heads, length, hd)

    def construct(self, x, cos, sin, flat_idx, bias, cache_rows, lora_idx):
        """x (R, T, d); cos/sin (R, 1, T, D); bias (R, 1, 1, T, L) additive mask.

        flat_idx None (training) attends within x itself and leaves the cache alone.
        """
        rows, seq = x.shape[0], x.shape[1]
        hd, kvh = self.head_dim, self.kv_heads
        q = self.q_proj(x, lora_idx).reshape(rows, seq, self.heads, hd).transpose(0, 2, 1, 3)
        k = self.k_proj(x, lora_idx).reshape(rows, seq, kvh, hd).transpose(0, 2, 1, 3)
        v = self.v_proj(x, lora_idx).reshape(rows, seq, kvh, hd).transpose(0, 2, 1, 3)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q = apply_rotary(q, cos, sin)
        k = apply_rotary(k, cos, sin)
        if flat_idx is None:
            k_all, v_all = k, v
        else:
            k_all, v_all = self.cache(k, v, flat_idx, cache_rows)  # (R, KVH, L, D)
        length = k_all.shape[2]
        # Query heads g*group..g*group+group-1 share kv head g: fold them into the query axis
        # instead of repeating the cache (HF repeat_kv order).
        q = q.reshape(rows, kvh, self.group * seq, hd)
        scores = ops.matmul(q, k_all.transpose(0, 1, 3, 2)) * self.scale  # (R, KVH, G*T, L)
        scores = scores.reshape(rows, kvh, self.group, seq, length) + bias
        probs = ops.softmax(scores, axis=-1).reshape(rows, kvh, self.group * seq, length)
        out = ops.matmul(probs, v_all)  # (R, KVH, G*T, D)
        out = out.reshape(rows, self.heads, seq, hd).transpose(0, 2, 1, 3)
        return self.o_proj(out.reshape(rows, seq, self.heads * hd), lora_idx)
