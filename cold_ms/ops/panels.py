"""Projection weights in panels: the layouts the CPU decode kernels read fastest.

A row-major weight (out, in) becomes (out / 16, in, 16): panel j holds outputs 16j..16j+15,
and for each input index k their 16 weights side by side. The kernels then multiply a
broadcast input value into a whole vector of outputs, with no sums across vector lanes
at the end, and read every panel as one sequential stream (custom_ops/cpu/decode_kernels.h:
SmolLM2-135M's projections 9-21% faster at 1 to 16 token rows). A weight whose output
size is not a multiple of 16 stays row-major; the kernels take either.
"""
import numpy as np


PANEL = 16


def packs(out_dim):
    """Whether a projection with this output size is stored in panels."""
    return out_dim % PANEL == 0


def shape(out_dim, in_dim, panels):
    """The stored shape of an (out_dim, in_dim) projection."""
    return (out_dim // PANEL, in_dim, PANEL) if panels and packs(out_dim) else (out_dim, in_dim)


def to_panels(w):
    out_dim, in_dim = w.shape
    return np.ascontiguousarray(w.reshape(out_dim // PANEL, PANEL, in_dim).transpose(0, 2, 1))


def to_rows(w):
    """(out, in) of a weight in either layout."""
    if w.ndim == 2:
        return w
    return np.ascontiguousarray(w.transpose(0, 2, 1).reshape(w.shape[0] * PANEL, w.shape[1]))


# ---- integer panels of q8_0 / q4_0 / q4_1 weights (custom_ops/cpu/qpanels.h) ------------------
# For panel p (outputs 16p .. 16p + 15) and block b of 32 inputs, panel_bytes of:
#   q8_0: bytes [64 g + 4 o + j] = q[o, 4g + j] (g < 8), then 16 fp16 scales, 16 int16 sums of q
#   q4_x: bytes [64 i + 4 o + j] = q[o, 4i + j] | q[o, 16 + 4i + j] << 4 (i < 4): GGUF's own
#         nibble bytes 4i .. 4i + 3, regrouped; then 16 fp16 scales (and 16 fp16 mins for q4_1)
# The values are the stored ones, bit for bit: only their order changes.

def qpanel_fits(wtype, shape):
    """Whether an (out, in) matrix of this type can be stored in integer panels."""
    return bool(wtype.panel_bytes) and shape[0] % PANEL == 0 and shape[1] % 32 == 0


def to_qpanels(packed):
    """A Packed q8_0 / q4_0 / q4_1 matrix -> uint8 (out / 16, in / 32, panel_bytes)."""
    t, (out_dim, in_dim) = packed.wtype, packed.shape
    p, nb = out_dim // PANEL, in_dim // 32
    raw = packed.data.reshape(p, PANEL, nb, t.block_bytes).transpose(0, 2, 1, 3)  # (p, nb, o, bytes)
    if t.name == "q8_0":
        q = raw[..., 2:].reshape(p, nb, PANEL, 8, 4).transpose(0, 1, 3, 2, 4).reshape(p, nb, 512)
        sums = raw[..., 2:].view(np.int8).astype(np.int16).sum(-1, dtype=np.int16)  # (p, nb, 16)
        parts = [q, raw[..., 0:2].reshape(p, nb, 32), np.ascontiguousarray(sums).view(np.uint8).reshape(p, nb, 32)]
    else:
        head = 4 if t.name == "q4_1" else 2
        q = raw[..., head:].reshape(p, nb, PANEL, 4, 4).transpose(0, 1, 3, 2, 4).reshape(p, nb, 256)
        parts = [q, raw[..., 0:2].reshape(p, nb, 32)] + ([raw[..., 2:4].reshape(p, nb, 32)] if head == 4 else [])
    out = np.concatenate(parts, axis=-1)
    assert out.shape[-1] == t.panel_bytes
    return np.ascontiguousarray(out)


def quantise_rows(x, bits):
    """Activations as qpanels.h quantises them to `bits` (8 or 16), dequantised: x (n, in) ->
    float32 (n, in). Per block of 32: d = max |x| / (2^(bits-1) - 1), q = x / d rounded to
    nearest (even on ties), value d q.
    """
    n, in_dim = x.shape
    xb = np.ascontiguousarray(x, np.float32).reshape(n, in_dim // 32, 32)
    d = np.abs(xb).max(-1, keepdims=True) / np.float32(2 ** (bits - 1) - 1)
    inv = np.divide(np.float32(1), d, out=np.zeros_like(d), where=d != 0)
    return (d * np.rint(xb * inv)).reshape(n, in_dim)
