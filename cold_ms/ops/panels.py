"""Projection weights in panels: the layouts the CPU decode kernels read fastest.

A row-major weight (out, in) becomes (out / 16, in, 16): panel j holds outputs 16j..16j+15,
and for each input index k their 16 weights side by side. The kernels then multiply a
broadcast input value into a whole vector of outputs, with no sums across vector lanes
at the end, and read every panel as one sequential stream (custom_ops/cpu/decode_kernels.h:
SmolLM2-135M's projections 9-21% faster at 1 to 16 token rows). A weight whose output
size is not a multiple of 16 stays row-major; the kernels take either.
"""
import numpy as np

from cold_ms import wtypes


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


# ---- integer panels (custom_ops/cpu/qpanels.h) -------------------------------------------------
# For panel p (outputs 16p .. 16p + 15) and block b of 32 inputs, panel_bytes of:
#   q8_0: bytes [64 g + 4 o + j] = q[o, 4g + j] (g < 8), then 16 fp16 scales, 16 int16 sums of q
#   q4_x: bytes [64 i + 4 o + j] = q[o, 4i + j] | q[o, 16 + 4i + j] << 4 (i < 4): GGUF's own
#         nibble bytes 4i .. 4i + 3, regrouped; then 16 fp16 scales (and 16 fp16 mins for q4_1)
#   q4_k: q4_x's nibbles of the block's sub-block, then 16 float32 scales d sc and 16 float32
#         mins -dmin m (w = scale q + min: q4_1's form; exact in float32, not in fp16)
#   q6_k: bytes [64 g + 4 o + j] = q[o, 4g + j] in 0..63, then 16 float32 scales d sc of inputs
#         0..15 (groups 0..3) and 16 of inputs 16..31 (groups 4..7); w = scale (q - 32)
# The values are the stored ones, bit for bit: only their order (and the scales' product) change.

def qpanel_fits(wtype, shape):
    """Whether an (out, in) matrix of this type can be stored in integer panels."""
    return bool(wtype.panel_bytes) and shape[0] % PANEL == 0 and shape[1] % 32 == 0


def _groups(q):
    """(p, nb, 16, 4 G) bytes of each output -> (p, nb, 64 G): G groups of 4 inputs x 16 outputs."""
    p, nb, _, width = q.shape
    return q.reshape(p, nb, PANEL, width // 4, 4).transpose(0, 1, 3, 2, 4).reshape(p, nb, 16 * width)


def _lanes(v, p, nb):
    """Per (output, block) values (out, nb) float32 -> (p, nb, 64) bytes: 16 outputs side by side."""
    return v.astype(np.float32).reshape(p, PANEL, nb).transpose(0, 2, 1).copy().view(np.uint8)


def _q8_0_panels(raw, p, nb):
    sums = raw[..., 2:].view(np.int8).astype(np.int16).sum(-1, dtype=np.int16)  # (p, nb, 16)
    return [_groups(raw[..., 2:]), raw[..., 0:2].reshape(p, nb, 32),
            np.ascontiguousarray(sums).view(np.uint8).reshape(p, nb, 32)]


def _q4_panels(raw, p, nb):
    head = 4 if raw.shape[-1] == 20 else 2  # q4_1 keeps a min after its scale
    return [_groups(raw[..., head:]), raw[..., 0:2].reshape(p, nb, 32)] + \
        ([raw[..., 2:4].reshape(p, nb, 32)] if head == 4 else [])


def _q4_k_panels(raw, p, nb):
    q, scale, low = wtypes.q4_k_parts(raw.reshape(-1, 144))
    q = q.reshape(p * PANEL, nb, 32)
    nibbles = (q[..., :16] | (q[..., 16:] << 4)).reshape(p, PANEL, nb, 16).transpose(0, 2, 1, 3)
    return [_groups(nibbles), _lanes(scale.reshape(-1, nb), p, nb), _lanes(-low.reshape(-1, nb), p, nb)]


def _q6_k_panels(raw, p, nb):
    q, sc, d = wtypes.q6_k_parts(raw.reshape(-1, 210))
    q = q.reshape(p, PANEL, nb, 32).transpose(0, 2, 1, 3)
    scale = (sc * d).reshape(-1, nb, 2)
    return [_groups(q), _lanes(scale[..., 0], p, nb), _lanes(scale[..., 1], p, nb)]


_PANELS = {"q8_0": _q8_0_panels, "q4_0": _q4_panels, "q4_1": _q4_panels, "q4_k": _q4_k_panels,
           "q6_k": _q6_k_panels}


def to_qpanels(packed):
    """A Packed matrix of a type with integer panels -> uint8 (out / 16, in / 32, panel_bytes)."""
    t, (out_dim, in_dim) = packed.wtype, packed.shape
    p, nb = out_dim // PANEL, in_dim // 32
    if t.block == 32:  # blocks of 32: (p, nb, 16 outputs, block bytes)
        raw = packed.data.reshape(p, PANEL, nb, t.block_bytes).transpose(0, 2, 1, 3)
    else:  # blocks of 256, each read whole: (rows, blocks of 256, bytes)
        raw = packed.data.reshape(out_dim, in_dim // t.block, t.block_bytes)
    out = np.concatenate(_PANELS[t.name](raw, p, nb), axis=-1)
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
