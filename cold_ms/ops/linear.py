"""Projections y = x W^T (+ the LoRA term) and embedding rows, by the custom CPU kernels or
MindSpore's ops.

The custom kernels (the LM head of an inference call and the embedding; the layers run as
whole-layer kernels, ops/decode.py) read W in its prepared type and layout (ops/prepare.py),
each weight once for all token rows, the LoRA term added in the same op; the gather backend
and training run MindSpore's MatMul plus `add_lora` on float (out, in) weights, in the
Cells' compute dtype (float32 accumulation where the device's MatMul gives it).
"""
import mindspore as ms
from mindspore import ops

from cold_ms import wtypes
from cold_ms.errors import InputError
from cold_ms.ops.bgmv import add_lora
from cold_ms.ops.infer import elem
from cold_ms.ops.panels import PANEL

_BLOCKS = {t.block_bytes: t.block for t in wtypes.TYPES.values() if t.code > 0}  # bytes -> values
_PANEL_BLOCKS = {t.panel_bytes for t in wtypes.TYPES.values() if t.panel_bytes}
assert PANEL not in _BLOCKS and PANEL not in _PANEL_BLOCKS and not _PANEL_BLOCKS & set(_BLOCKS)
assert len({t.block for t in wtypes.TYPES.values() if t.block_bytes == 2}) == 1  # bf16, f16: blocks of 1

# Custom primitives, set by ops/registry.py before any graph that uses them compiles.
_DENSE = None
_DENSE_LORA = None
_LIBRARY = []


def sizes(w):
    """(out, in) of a prepared weight's shape (ops/prepare.py): float32 (out, in) or panels
    (out / 16, in, 16); uint8 rows of blocks (out, in / block, block bytes) or integer panels
    (out / 16, in / 32, panel bytes). The last axis tells the layouts apart: wtypes declares no
    block or panel block of 16 bytes, and every one of them once."""
    if len(w) == 2:
        return w[0], w[1]
    if w[2] == PANEL:
        return w[0] * PANEL, w[1]
    if w[2] in _PANEL_BLOCKS:
        return w[0] * PANEL, w[1] * 32
    if w[2] in _BLOCKS:
        return w[0], w[1] * _BLOCKS[w[2]]
    return None


def _dense_shape(x, w, wtype, *lora):
    found = sizes(w) if len(w) in (2, 3) else None
    if len(x) != 3 or found is None or found[1] != x[2] or list(wtype) != [2]:
        raise InputError(f"decode linear: x {list(x)} and W {list(w)} do not fit (x is (R, T, in), "
                         f"W a prepared weight of `in` inputs, wtype its (2,) kind: type code, activation bits)")
    out = found[0]
    if lora and (len(lora[0]) != 3 or lora[0][2] != x[2] or list(lora[1][:2]) != list(lora[0][:2])
                 or lora[1][2] != out or lora[2][0] != x[0]):
        raise InputError(f"decode linear: LoRA stacks {list(lora[0])}, {list(lora[1])} do not fit W {list(w)}")
    return [x[0], x[1], out]


def _dense_type(x, w, wtype, *lora):
    if elem(x) != ms.float32 or elem(w) not in (ms.float32, ms.uint8) or elem(wtype) != ms.int32:
        raise InputError(f"decode linear: float32 x, float32 or uint8 W and an int32 kind expected, "
                         f"got {x}, {w}, {wtype}")
    return x


def register_cpu(library):
    global _DENSE, _DENSE_LORA
    _DENSE = ops.Custom(f"{library}:DecodeLinear", _dense_shape, _dense_type, func_type="aot")
    _DENSE_LORA = ops.Custom(f"{library}:DecodeLoraLinear", _dense_shape, _dense_type, func_type="aot")
    _LIBRARY[:] = [library]


def embed_op(dim):
    """EmbedRows(table, wtype, tokens (R, T)) -> (R, T, dim) float32: rows of a prepared table."""
    if not _LIBRARY:
        raise InputError("embed_op: the CPU kernels are not registered (ops/registry.select_backend)")
    def shape(table, wtype, tokens):
        found = sizes(table) if len(table) in (2, 3) else None
        if found is None or found[1] != dim or list(wtype) != [2]:
            raise InputError(f"embed rows: table {list(table)} is not a prepared table of {dim} values a row")
        return [*tokens, dim]

    return ops.Custom(f"{_LIBRARY[0]}:EmbedRows", shape, lambda table, wtype, tokens: ms.float32, func_type="aot")


def project(x, weight, wtype, matmul, lora_a, lora_b, idx, backend, kernels):
    """x (R, T, in) @ W^T, plus BGMV(x, A, B, idx) when lora_a is given. kernels: the custom
    CPU kernels read the prepared weight (any type, wtype its kind); else MatMul reads a float
    (out, in) weight in its dtype, the result is in that dtype and `backend` adds the LoRA term
    (accumulated in float32 inside add_lora, bgmv.py)."""
    rows, seq = x.shape[0], x.shape[1]
    if kernels:
        if lora_a is None:
            return _DENSE(x, weight, wtype)
        return _DENSE_LORA(x, weight, wtype, lora_a, lora_b, idx)
    flat = x.reshape(rows * seq, x.shape[2])
    y = matmul(flat if weight.dtype == ms.float32 else flat.astype(weight.dtype), weight)
    y = y.reshape(rows, seq, weight.shape[0])
    if lora_a is None:
        return y
    return add_lora(y, x, lora_a, lora_b, idx, backend)
