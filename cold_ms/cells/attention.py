"""Grouped-query attention over the static KV cache, one position per token and row; with the
family's q/k/v biases and per-head q/k RMSNorms (before rope), scaled by cfg.attn_scale.

On Ascend, inference reads the cache only up to the live positions: block by block of `block`
positions with an online softmax, stopping after the block that holds the step's furthest
position, so a step at position p reads ceil((p + 1) / block) blocks of keys and values, not all
max_len. On the CPU it is off (`live_blocks` False): the graph's while loop alone made a decode
step slower than reading the whole cache (random 100m model, gather backend, max_len 1024,
context 24-57: 70 ms against 44 ms a step; block 0 without the loop: 33 ms; alternated on a
busy machine: 145 and 165 ms against 56 and 92). Its speed on an NPU has not been measured."""
import mindspore as ms
from mindspore import nn, ops

from cold_ms.cells.kv_cache import KVCache
from cold_ms.cells.norm import RMSNorm
from cold_ms.cells.lora_linear import target_linear
from cold_ms.cells.rope import apply_rotary
from cold_ms.runtime import device

MASKED = -1e30  # additive attention bias for positions a query must not see (finite: see live_blocks)
# Key positions per block of the live-position attention: long enough for whole-matrix work per
# block, short enough that a step early in a long context reads little of it.
BLOCK = 128


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
            self.q_norm = RMSNorm(hd, cfg.rms_norm_eps, spec.backend, spec.compute_dtype)
            self.k_norm = RMSNorm(hd, cfg.rms_norm_eps, spec.backend, spec.compute_dtype)
        self.o_proj = target_linear("o_proj", self.heads * hd, d, spec)
        self.cache = KVCache(rows, self.kv_heads, length, hd, spec.kv_dtype)
        self.block = min(BLOCK, length)
        self.live_blocks_on = device() == "Ascend"  # see the module docstring

    def construct(self, x, cos, sin, flat_idx, bias, cache_rows, lora_idx, live=None):
        """x (R, T, d); cos/sin (R, 1, T, D); bias (R, 1, 1, T, L) additive mask; live () int32:
        keys at positions >= live are visible to no query of the step (None: read them all).

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
        # Query heads g*group..g*group+group-1 share kv head g: fold them into the query axis
        # instead of repeating the cache (HF repeat_kv order).
        q = q.reshape(rows, kvh, self.group * seq, hd)
        if flat_idx is None or live is None or not self.live_blocks_on:
            out = self.whole(q, k_all, v_all, bias)
        else:
            out = self.live_blocks(q, k_all, v_all, bias, live)
        out = out.reshape(rows, self.heads, seq, hd).transpose(0, 2, 1, 3)
        return self.o_proj(out.reshape(rows, seq, self.heads * hd), lora_idx)

    def whole(self, q, k_all, v_all, bias):
        """Attention over every key: q (R, KVH, G*T, D), k/v (R, KVH, L, D) -> (R, KVH, G*T, D).
        Scores, mask and softmax in float32 (a float16 exp overflows past 11, and MASKED is
        -inf there); the probabilities meet the values in the compute dtype."""
        rows, kvh, gt, _ = q.shape
        length = k_all.shape[2]
        scores = ops.matmul(q, k_all.transpose(0, 1, 3, 2)).astype(ms.float32) * self.scale  # (R, KVH, G*T, L)
        scores = scores.reshape(rows, kvh, self.group, gt // self.group, length) + bias
        probs = ops.softmax(scores, axis=-1).reshape(rows, kvh, gt, length)
        return ops.matmul(probs.astype(v_all.dtype), v_all)  # (R, KVH, G*T, D)

    def block_scores(self, q, k_all, bias, start):
        """Scores (R, KVH, G*T, B) of the keys at start .. start + B - 1 (positions past the cache
        clamped to its last and masked), and those positions (B,)."""
        rows, kvh, gt, _ = q.shape
        length = k_all.shape[2]
        keys = start + ops.arange(0, self.block, dtype=ms.int32)
        inside = keys < length
        keys = ops.minimum(keys, length - 1)
        scores = ops.matmul(q, ops.gather(k_all, keys, 2).transpose(0, 1, 3, 2)).astype(ms.float32) * self.scale
        mask = ops.gather(bias, keys, 4) + ops.select(inside, ops.zeros_like(keys, dtype=ms.float32),
                                                      ops.full_like(keys, MASKED, dtype=ms.float32))
        scores = scores.reshape(rows, kvh, self.group, gt // self.group, self.block) + mask
        return scores.reshape(rows, kvh, gt, self.block), keys

    def live_blocks(self, q, k_all, v_all, bias, live):
        """whole() over the blocks of keys that hold a position < live, with an online softmax
        (running max m, sum l, weighted values acc); the masked constant is finite, so a block a
        row cannot see is wiped by the next one it can (exp(MASKED - m) = 0). m, l and acc are
        float32, as in whole(); each block's probabilities meet the values in the compute dtype."""
        scores, keys = self.block_scores(q, k_all, bias, ops.zeros((), ms.int32))
        m = scores.max(axis=-1, keepdims=True)
        p = ops.exp(scores - m)
        l = p.sum(axis=-1, keepdims=True)
        acc = self.weighted(p, v_all, keys)
        start = ops.full((), self.block, dtype=ms.int32)
        while start < live:
            scores, keys = self.block_scores(q, k_all, bias, start)
            m_new = ops.maximum(m, scores.max(axis=-1, keepdims=True))
            fade = ops.exp(m - m_new)
            p = ops.exp(scores - m_new)
            l = l * fade + p.sum(axis=-1, keepdims=True)
            acc = acc * fade + self.weighted(p, v_all, keys)
            m = m_new
            start = start + self.block
        return (acc / l).astype(v_all.dtype)

    @staticmethod
    def weighted(p, v_all, keys):
        """float32 (R, KVH, G*T, D): the probabilities p of one block times its values."""
        return ops.matmul(p.astype(v_all.dtype), ops.gather(v_all, keys, 2)).astype(ms.float32)
