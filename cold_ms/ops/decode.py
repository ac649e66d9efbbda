"""Single-op RMSNorm, rotary embedding and decode attention (custom CPU kernels).

Used by the Cells when the backend is "custom" on the CPU: each replaces five to fifteen
MindSpore kernel launches, which at decode sizes cost more than the arithmetic. The
MindSpore formulations in the Cells stay the twin (the "gather" backend, prefill of
attention, training) and the test oracle.
"""
import mindspore as ms
from mindspore import ops

from cold_ms.errors import InputError

_RMS_NORM = None
_ROPE = None
_ATTENTION = None


def _same(x, *rest):
    return x


def _attention_shape(q, k, v, pos):
    if len(q) != 3 or q[1] != 1 or len(k) != 4 or list(k) != list(v) or k[0] != q[0]:
        raise InputError(f"decode attention: q {list(q)} and caches {list(k)}, {list(v)} do not fit")
    return q


def _attention_type(q, k, v, pos):
    return q


def register_cpu(library):
    global _RMS_NORM, _ROPE, _ATTENTION
    _RMS_NORM = ops.Custom(f"{library}:RmsNorm", _same, _same, func_type="aot")
    _ROPE = ops.Custom(f"{library}:Rope", _same, _same, func_type="aot")
    _ATTENTION = ops.Custom(f"{library}:DecodeAttention", _attention_shape, _attention_type, func_type="aot")


def available():
    return _RMS_NORM is not None


def rms_norm(x, weight, eps):
    """weight * x / sqrt(mean(x^2, -1) + eps); eps a (1,) float32 tensor."""
    return _RMS_NORM(x, weight, eps)


def rope(x, cos, sin):
    """Rotate every head of x (R, T, heads*D) by cos/sin (R, T, D), rotate-half convention."""
    return _ROPE(x, cos, sin)


def decode_attention(q, k_all, v_all, positions):
    """One query per row, q (R, 1, H*D), over cache rows (R, KVH, L, D) up to positions (R, 1)."""
    return _ATTENTION(q, k_all, v_all, positions.astype(ms.int32))
