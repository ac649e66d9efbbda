"""Projections y = x W^T (+ the LoRA term), by the custom kernels or MindSpore's MatMul.

The custom backend on the CPU (the LM head of an inference call; the layers themselves run
as whole-layer kernels, cold_ms/ops/decode.py) runs the DecodeLinear kernels, which read
each weight once for all token rows and add the LoRA term in the same op; the gather
backend and training run MindSpore's MatMul plus `add_lora`.
"""
import mindspore as ms
from mindspore import ops

from cold_ms.errors import InputError
from cold_ms.ops.bgmv import add_lora
from cold_ms.ops.panels import PANEL

# Custom primitives, set by register_cpu before any graph that uses them compiles.
_DENSE = None
_DENSE_LORA = None


def _elem(t):
    return t.element_type() if hasattr(t, "element_type") else t


def _dense_shape(x, w, *lora):
    if len(x) != 3 or len(w) not in (2, 3) or x[2] != w[1] or (len(w) == 3 and w[2] != PANEL):
        raise InputError(f"decode linear: x {list(x)} and W {list(w)} do not fit (x is (R, T, in), "
                         f"W (out, in) or panels (out / {PANEL}, in, {PANEL}))")
    out = w[0] * w[2] if len(w) == 3 else w[0]
    if lora and (len(lora[0]) != 3 or lora[0][2] != w[1] or list(lora[1][:2]) != list(lora[0][:2])
                 or lora[1][2] != out or lora[2][0] != x[0]):
        raise InputError(f"decode linear: LoRA stacks {list(lora[0])}, {list(lora[1])} do not fit W {list(w)}")
    return [x[0], x[1], out]


def _dense_type(x, w, *lora):
    if _elem(x) != ms.float32 or _elem(w) != ms.float32:
        raise InputError(f"decode linear: float32 data expected, got {x} and {w}")
    return x


def register_cpu(library):
    global _DENSE, _DENSE_LORA
    _DENSE = ops.Custom(f"{library}:DecodeLinear", _dense_shape, _dense_type, func_type="aot")
    _DENSE_LORA = ops.Custom(f"{library}:DecodeLoraLinear", _dense_shape, _dense_type, func_type="aot")


def project(x, weight, matmul, lora_a, lora_b, idx, backend):
    """x (R, T, in) @ weight (out, in)^T, plus BGMV(x, A, B, idx) when lora_a is given. The
    custom kernels also take the weight in panels (ops/panels.py)."""
    rows, seq = x.shape[0], x.shape[1]
    if backend == "custom" and _DENSE is not None:
        if lora_a is None:
            return _DENSE(x, weight)
        return _DENSE_LORA(x, weight, lora_a, lora_b, idx)
    y = matmul(x.reshape(rows * seq, x.shape[2]), weight).reshape(rows, seq, weight.shape[0])
    if lora_a is None:
        return y
    return add_lora(y, x, lora_a, lora_b, idx, backend)
