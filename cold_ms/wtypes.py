"""Weight types: one declaration per type, read by the loaders, the prepared weights, the
kernels' dispatch and the numpy twins.

A type stores a matrix row by row in blocks of `block` values, `block_bytes` bytes each
(float types are blocks of one value). The block types are GGUF's (llama.cpp's) exactly:

    q8_0  (34 B / 32)   d fp16, q int8[32]                      w = d * q
    q4_0  (18 B / 32)   d fp16, nibbles[16]                     w = d * (q - 8)
    q4_1  (20 B / 32)   d fp16, m fp16, nibbles[16]             w = d * q + m
          byte j holds value j (low nibble) and value j + 16 (high nibble)
    q5_0  (22 B / 32)   d fp16, qh uint32, nibbles[16]         w = d * (q - 16)
          q's low 4 bits as q4_0's, bit 4 of value j is bit j of qh (little-endian)
    q4_k  (144 B / 256) d, dmin fp16, 8 x (6-bit scale, 6-bit min) in 12 bytes, nibbles[128]
          w = d * sc_s * q - dmin * m_s for sub-block s of 32; bytes 32c.. hold sub-blocks
          2c (low nibbles) and 2c + 1 (high nibbles)
    q6_k  (210 B / 256) ql[128], qh[64], sc int8[16], d fp16
          w = d * sc_s * (q - 32), q 6 bits (low 4 in ql, high 2 in qh), sub-blocks of 16

`code` is the CPU kernels' number for the type (custom_ops/cpu/wtypes.h, checked against this
table when the library loads). Every to_float / from_float below is the numpy twin of a
kernel routine, written from the definitions above.
"""
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from cold_ms.errors import CheckpointError, ConfigError


def _f16(raw, at):
    """The fp16 at byte `at` of every block row, as float32 (n, 1)."""
    return raw[:, at:at + 2].copy().view(np.float16).astype(np.float32)


def _nibbles(qs):
    """(n, 16k) bytes -> (n, 32k): each run of 16 bytes gives its low nibbles, then its high."""
    n, b = qs.shape
    q = qs.reshape(n, b // 16, 1, 16)
    return np.concatenate([q & 0xF, q >> 4], axis=2).reshape(n, 2 * b).astype(np.float32)


def _f32_to(raw):
    return raw.copy().view(np.float32)


def _f32_from(x):
    return np.ascontiguousarray(x, np.float32).view(np.uint8)


def _bf16_to(raw):
    return (raw.copy().view(np.uint16).astype(np.uint32) << 16).view(np.float32)


def _bf16_from(x):
    """Round to nearest even; NaN stays NaN."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    rounded[np.isnan(x)] = 0x7FC0
    return rounded.view(np.uint8)


def _f16_to(raw):
    return raw.copy().view(np.float16).astype(np.float32)


def _f16_from(x):
    return np.ascontiguousarray(x, np.float32).astype(np.float16).view(np.uint8)


def _q8_0_to(raw):
    return _f16(raw, 0) * raw[:, 2:].view(np.int8).astype(np.float32)


def _q8_0_from(x):
    """llama.cpp's quantize_row_q8_0: d = max |x| / 127, q = round(x / d) (half away from 0)."""
    d = np.abs(x).max(axis=1, keepdims=True) / 127
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    v = x * inv
    a = np.abs(v)
    q = np.floor(a)
    q = np.copysign(q + (a - q >= 0.5), v).astype(np.int8)  # roundf: halves away from zero
    return np.concatenate([d.astype(np.float16).view(np.uint8), q.view(np.uint8)], axis=1)


def _nibble_bytes(q):
    """(n, 32) values 0..15 -> (n, 16) bytes: value j low, value j + 16 high."""
    q = q.astype(np.uint8)
    return q[:, :16] | (q[:, 16:] << 4)


def _q4_0_from(x):
    """llama.cpp's quantize_row_q4_0_ref: d = (the value of largest magnitude) / -8,
    q = min(15, trunc(x / d + 8.5))."""
    top = np.take_along_axis(x, np.abs(x).argmax(axis=1)[:, None], axis=1)
    d = top / -8
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    q = np.minimum(15, np.trunc(x * inv + np.float32(8.5)).astype(np.int8))
    return np.concatenate([d.astype(np.float16).view(np.uint8), _nibble_bytes(q)], axis=1)


def _q4_1_from(x):
    """llama.cpp's quantize_row_q4_1_ref: m = min, d = (max - min) / 15, q = min(15, trunc((x - m) / d + 0.5))."""
    lo, hi = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
    d = (hi - lo) / 15
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    q = np.minimum(15, np.trunc((x - lo) * inv + np.float32(0.5)).astype(np.int8))
    return np.concatenate([d.astype(np.float16).view(np.uint8), lo.astype(np.float16).view(np.uint8),
                           _nibble_bytes(q)], axis=1)


def _q4_0_to(raw):
    return _f16(raw, 0) * (_nibbles(raw[:, 2:]) - 8)


def _q4_1_to(raw):
    return _f16(raw, 0) * _nibbles(raw[:, 4:]) + _f16(raw, 2)


def _q5_0_values(raw):
    """q - 16 of every q5_0 block (n, 32) as float32: the nibbles plus bit j of qh for value j."""
    high = np.unpackbits(raw[:, 2:6], axis=1, bitorder="little").astype(np.float32)
    return _nibbles(raw[:, 6:]) + 16 * high - 16


def _q5_0_to(raw):
    return _f16(raw, 0) * _q5_0_values(raw)


def _q5_0_as_q8_0(raw):
    """q5_0 blocks as q8_0 blocks of the same values, bit for bit: the scale d kept, q - 16 in int8."""
    return np.concatenate([raw[:, 0:2], _q5_0_values(raw).astype(np.int8).view(np.uint8)], axis=1)


def k4_scales(sc):
    """q4_k's 12 scale bytes (n, 12) -> 6-bit scales and mins (n, 8) each, as float32."""
    sc = sc.astype(np.uint8)
    lo, hi = sc[:, 0:4], sc[:, 8:12]
    scales = np.concatenate([lo & 63, (hi & 0xF) | ((lo >> 6) << 4)], axis=1)
    mins = np.concatenate([sc[:, 4:8] & 63, (hi >> 4) | ((sc[:, 4:8] >> 6) << 4)], axis=1)
    return scales.astype(np.float32), mins.astype(np.float32)


def q4_k_parts(raw):
    """q4_k blocks (n, 144) -> q (n, 8, 32) uint8 0..15, and per sub-block of 32 the scale d * sc
    and the min dmin * m (n, 8) float32 (exact: 11-bit by 6-bit products); w = scale q - min."""
    n = raw.shape[0]
    scales, mins = k4_scales(raw[:, 4:16])
    q = raw[:, 16:].reshape(n, 4, 1, 32)
    q = np.concatenate([q & 0xF, q >> 4], axis=2).reshape(n, 8, 32)
    return q, _f16(raw, 0) * scales, _f16(raw, 2) * mins


def _q4_k_to(raw):
    q, scale, low = q4_k_parts(raw)
    return (scale[:, :, None] * q.astype(np.float32) - low[:, :, None]).reshape(len(raw), 256)


def q6_k_parts(raw):
    """q6_k blocks (n, 210) -> q (n, 256) uint8 0..63, and per sub-block of 16 the int8 scale
    (n, 16) and d (n, 1), both float32; w = d * sc * (q - 32)."""
    n = raw.shape[0]
    ql, qh = raw[:, :128].reshape(n, 2, 2, 32), raw[:, 128:192].reshape(n, 2, 1, 32)
    # half h, quarter c: low 4 bits from ql[h, c % 2] (low nibble for c < 2), high 2 from qh >> 2c
    low = np.concatenate([ql & 0xF, ql >> 4], axis=2)  # (n, 2, 4, 32): c = 0, 1 low; 2, 3 high
    high = np.concatenate([(qh >> s) & 3 for s in (0, 2, 4, 6)], axis=2)
    return (low | (high << 4)).reshape(n, 256), raw[:, 192:208].view(np.int8).astype(np.float32), _f16(raw, 208)


def _q6_k_to(raw):
    q, sc, d = q6_k_parts(raw)
    w = (q.astype(np.float32) - 32).reshape(-1, 16, 16) * sc[:, :, None] * d[:, :, None]
    return w.reshape(len(raw), 256)


@dataclass(frozen=True)
class WeightType:
    name: str
    code: int            # the CPU kernels' number for it (custom_ops/cpu/wtypes.h)
    gguf: int            # GGML type id
    block: int           # values per block
    block_bytes: int     # bytes per block
    to_float: Callable   # (n, block_bytes) uint8 -> (n, block) float32
    from_float: Optional[Callable] = None  # (n, block) float32 -> (n, block_bytes) uint8; None: never made
    panel_bytes: int = 0  # bytes of one 32-input block of a 16-output integer panel (ops/panels.py); 0: no such layout
    # (type name, blocks -> its blocks): a type with integer panels that holds every value of this
    # one exactly, which `--weights auto` reads instead where those panels run (faster than
    # dequantising this type in L1 for every token)
    widens_to: Optional[tuple] = None

    @property
    def quantised(self):
        return self.block > 1

    def row_bytes(self, cols):
        return cols // self.block * self.block_bytes


TYPES = {t.name: t for t in (
    WeightType("f32", 0, 0, 1, 4, _f32_to, _f32_from),
    WeightType("bf16", 1, 30, 1, 2, _bf16_to, _bf16_from),
    WeightType("f16", 2, 1, 1, 2, _f16_to, _f16_from),
    WeightType("q8_0", 3, 8, 32, 34, _q8_0_to, _q8_0_from, panel_bytes=576),
    WeightType("q4_0", 4, 2, 32, 18, _q4_0_to, _q4_0_from, panel_bytes=288),
    WeightType("q4_1", 5, 3, 32, 20, _q4_1_to, _q4_1_from, panel_bytes=320),
    WeightType("q4_k", 6, 12, 256, 144, _q4_k_to, panel_bytes=384),
    WeightType("q6_k", 7, 14, 256, 210, _q6_k_to, panel_bytes=640),
    WeightType("q5_0", 8, 6, 32, 22, _q5_0_to, widens_to=("q8_0", _q5_0_as_q8_0)),
)}
BY_GGUF = {t.gguf: t for t in TYPES.values()}
F32 = TYPES["f32"]
# --weights choices: "auto" keeps what the checkpoint stores where a kernel reads it,
# "native" insists on exactly that, the others convert every projection and embedding.
CHOICES = {"auto": None, "native": None, "float32": "f32", "bfloat16": "bf16", "float16": "f16", "q8_0": "q8_0"}


def foreign(name, gguf, block, block_bytes, to_float):
    """A stored type no kernel reads (code -1): loaders keep it as stored, engines convert it."""
    return WeightType(name, -1, gguf, block, block_bytes, to_float)


def describe(weights):
    """'q4_1 x210, f32 x61, q8_0 x1': the stored types of {name: weight}, commonest first."""
    counts = {}
    for w in weights.values():
        name = type_of(w).name
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{n} x{c}" for n, c in sorted(counts.items(), key=lambda kv: -kv[1]))


class Packed:
    """A (rows, cols) matrix in a block type, blocks as stored: `stored` (n, row_bytes) uint8,
    row i of the matrix being stored row order[i] (order None: the same row). Loaders keep
    `stored` as a view of the file where they can; a row order (llama.cpp's Q/K permutation
    undone) is applied only when the rows are read (`data`), so loading copies nothing."""

    ndim = 2

    def __init__(self, wtype, shape, stored, order=None):
        rows, cols = shape
        n = rows if order is None else len(stored)
        if cols % wtype.block or stored.shape != (n, wtype.row_bytes(cols)) or stored.dtype != np.uint8 \
                or (order is not None and len(order) != rows):
            raise CheckpointError(f"{wtype.name} data {stored.dtype}{stored.shape} does not hold a {shape} matrix")
        self.wtype, self.shape, self.stored, self.order = wtype, tuple(shape), stored, order

    @property
    def data(self):
        """The rows' bytes (rows, row_bytes) in the matrix's order (a new array if reordered)."""
        return self.stored if self.order is None else self.stored[self.order]

    @property
    def nbytes(self):
        return self.stored.nbytes

    def to_float(self):
        rows, cols = self.shape
        blocks = self.data.reshape(rows * (cols // self.wtype.block), self.wtype.block_bytes)
        return self.wtype.to_float(blocks).reshape(rows, cols)

    def take_rows(self, order):
        """The matrix with its rows in `order` (whole rows: blocks never span two); no copy."""
        order = np.asarray(order)
        return Packed(self.wtype, (len(order), self.shape[1]), self.stored,
                      order if self.order is None else self.order[order])

    def __repr__(self):
        return f"Packed({self.wtype.name}, {self.shape})"


def type_of(w):
    """The WeightType of a weight: a float32 ndarray or a Packed."""
    if isinstance(w, Packed):
        return w.wtype
    if w.dtype != np.float32:
        raise ConfigError(f"weights are float32 arrays or Packed, got {w.dtype}")
    return F32


def to_float(w):
    """float32 values of a weight (an ndarray is returned as is)."""
    return w.to_float() if isinstance(w, Packed) else w


def widen(w):
    """A Packed matrix of a type with `widens_to`, as that type: the same values, exactly."""
    name, blocks = w.wtype.widens_to
    target = TYPES[name]
    rows, cols = w.shape
    raw = blocks(w.data.reshape(rows * cols // w.wtype.block, w.wtype.block_bytes))
    return Packed(target, w.shape, np.ascontiguousarray(raw.reshape(rows, -1)))


def fits(wtype, shape):
    """Whether a matrix of this shape can be stored in `wtype` (rows are whole blocks)."""
    return len(shape) == 2 and shape[1] % wtype.block == 0


def convert(w, wtype):
    """The weight in `wtype`: as it is when already so; f32 as a float32 ndarray."""
    if type_of(w) is wtype:
        return w
    values = to_float(w)
    if wtype is F32:
        return values
    if wtype.from_float is None:
        raise ConfigError(f"cannot convert weights to {wtype.name}: it is read as stored, never made")
    if not fits(wtype, values.shape):
        raise ConfigError(f"a {values.shape} matrix cannot be stored as {wtype.name} "
                          f"(rows must be whole blocks of {wtype.block})")
    rows, cols = values.shape
    blocks = wtype.from_float(values.reshape(rows * cols // wtype.block, wtype.block))
    return Packed(wtype, (rows, cols), np.ascontiguousarray(blocks.reshape(rows, -1)))
