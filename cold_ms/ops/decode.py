"""Single-op RMSNorm and whole-layer decode ops (custom CPU kernels).

Used by the Cells when the backend is "custom" on the CPU. A decode layer written with
MindSpore ops is some twenty kernel launches, which at decode sizes cost more than the
arithmetic; DecodeLayerPre/DecodeLayerPost do the same work as two. The MindSpore
formulations in the Cells remain the twin (the "gather" backend, prompt chunks,
training) and the test oracle.
"""
import numpy as np
import mindspore as ms
from mindspore import ops, Tensor

from cold_ms.errors import InputError

# The LoRA operand of a module without adapter slots; the kernels recognise its shape.
NO_LORA = Tensor(np.zeros((1, 1, 1), np.float32))

_RMS_NORM = None
_LAYER_PRE = None
_LAYER_POST = None


def _same(x, *rest):
    return x


def _pre_shape(h, ln, eps, wq, wk, wv, *rest):
    if len(h) != 3 or h[1] != 1 or wq[1] != h[2]:
        raise InputError(f"decode layer: h {list(h)} must be (R, 1, d) for weights {list(wq)}")
    return [h[0], 1, wq[0]], [h[0], 1, wk[0]], [h[0], 1, wv[0]]


def _pre_type(h, *rest):
    return h, h, h


def register_cpu(library):
    global _RMS_NORM, _LAYER_PRE, _LAYER_POST
    _RMS_NORM = ops.Custom(f"{library}:RmsNorm", _same, _same, func_type="aot")
    _LAYER_PRE = ops.Custom(f"{library}:DecodeLayerPre", _pre_shape, _pre_type, func_type="aot")
    _LAYER_POST = ops.Custom(f"{library}:DecodeLayerPost", _same, _same, func_type="aot")


def available():
    return _RMS_NORM is not None


def fused_layers(backend, rows):
    """Whether decode steps of `rows` token rows run the whole-layer kernels."""
    from cold_ms.ops.linear import DECODE_ROWS
    return backend == "custom" and available() and rows <= DECODE_ROWS


def rms_norm(x, weight, eps):
    """weight * x / sqrt(mean(x^2, -1) + eps); eps a (1,) float32 tensor."""
    return _RMS_NORM(x, weight, eps)


def layer_pre(h, norm, q, k, v, lora_idx, cos, sin):
    """Rotated q, k and v (R, 1, .) of a decode layer: norm, projections (+ LoRA), rotary."""
    return _LAYER_PRE(h, norm.weight, norm.eps_t, q.weight, k.weight, v.weight, *q.lora_pair(), *k.lora_pair(),
                      *v.lora_pair(), lora_idx, cos, sin)


def layer_post(h, q, k_all, v_all, positions, o, norm, gate, up, down, lora_idx):
    """h + attention output + SwiGLU MLP of a decode layer (R, 1, d), caches (R, KVH, L, D)."""
    return _LAYER_POST(h, q, k_all, v_all, positions.astype(ms.int32), o.weight, *o.lora_pair(), norm.weight,
                       norm.eps_t, gate.weight, *gate.lora_pair(), up.weight, *up.lora_pair(), down.weight,
                       *down.lora_pair(), lora_idx)
