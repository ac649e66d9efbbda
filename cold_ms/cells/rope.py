"""Rotary position embedding, HF rotate-half convention, with the rope scalings cold_ms reads."""
import numpy as np
from mindspore import ops


def inv_freq(cfg, local=False):
    """The rotation frequencies (head_dim / 2,) float32 of the global rope (rope_theta, rope_scaling,
    rope_freq_factors), or of the local one of sliding-window layers (rope_local_theta, unscaled),
    computed as HF's rope initialisers do."""
    dim = cfg.head_dim
    theta = cfg.rope_local_theta if local else cfg.rope_theta
    exponent = np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / np.float32(dim)
    freq = (np.float32(1.0) / np.float32(theta) ** exponent).astype(np.float32)
    if local:
        return freq
    if cfg.rope_freq_factors:  # llama.cpp's rope_freqs: theta_i / factor_i
        freq = (freq / np.asarray(cfg.rope_freq_factors, np.float32)).astype(np.float32)
    scaling = dict(cfg.rope_scaling)
    kind = scaling.get("rope_type", "default")
    if kind == "linear":
        freq = (freq / np.float32(scaling["factor"])).astype(np.float32)
    elif kind == "llama3":
        freq = _llama3(freq, scaling)
    return freq


def _llama3(freq, s):
    """Llama 3.1's rope: long wavelengths divided by `factor`, short ones kept, a smooth blend between."""
    factor, low, high = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
    old = s["original_max_position_embeddings"]
    wavelen = 2 * np.pi / freq
    scaled = np.where(wavelen > old / low, freq / factor, freq)
    smooth = (old / wavelen - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old / high) & (wavelen <= old / low)
    return np.where(medium, blended, scaled).astype(np.float32)


def rope_tables(freq, num_positions):
    """cos, sin tables (num_positions, head_dim) of frequencies `freq`, in float32 as HF computes them."""
    freqs = np.arange(num_positions, dtype=np.float32)[:, None] * freq[None, :]
    emb = np.concatenate([freqs, freqs], axis=-1)
    return np.cos(emb).astype(np.float32), np.sin(emb).astype(np.float32)


def apply_rotary(x, cos, sin):
    """x (R, heads, T, D) rotated by cos/sin (R, 1, T, D): x*cos + rotate_half(x)*sin."""
    half = x.shape[-1] // 2
    x1 = x[..., :half]
    x2 = x[..., half:]
    return x * cos + ops.concat((-x2, x1), axis=-1) * sin
