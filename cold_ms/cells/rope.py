"""Rotary position embedding, HF rotate-half convention."""
import numpy as np
from mindspore import ops


def rope_tables(head_dim, num_positions, theta):
    """cos, sin tables (num_positions, head_dim), computed in float32 as HF LLaMA does."""
    exponent = np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / np.float32(head_dim)
    inv_freq = (np.float32(1.0) / np.float32(theta) ** exponent).astype(np.float32)
    freqs = np.arange(num_positions, dtype=np.float32)[:, None] * inv_freq[None, :]
    emb = np.concatenate([freqs, freqs], axis=-1)
    return np.cos(emb).astype(np.float32), np.sin(emb).astype(np.float32)


def apply_rotary(x, cos, sin):
    """x (R, heads, T, D) rotated by cos/sin (R, 1, T, D): x*cos + rotate_half(x)*sin."""
    half = x.shape[-1] // 2
    x1 = x[..., :half]
    x2 = x[..., half:]
    return x * cos + ops.concat((-x2, x1), axis=-1) * sin
