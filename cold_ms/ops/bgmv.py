"""The LoRA term of a multi-adapter batch (BGMV: batched gather matrix-vector).

    shrink:  v[i]  = x[i] @ A[idx[i]]^T          (rank r, float32 accumulation)
    expand:  y[i] += v[i] @ B[idx[i]]            (lora_alpha / r already folded into B)
    idx[i] < 0 leaves y[i] unchanged: that row runs the base model.

Shapes: x (R, T, in), A (S, r, in), B (S, r, out), idx (R,) int32/int64, y (R, T, out);
x, A, B and y share one dtype (float32, float16 or bfloat16), v is float32.
Both stacks are rank-major: A[s] is PEFT's lora_A (r, in) as stored, B[s] is
scaling * lora_B^T (r, out). Each of the r rows is then one contiguous run of `in` or
`out` values, which the kernels stream and vectorise whatever the rank.

Backends: "custom" (default) runs the compiled kernels - the CPU AOT library here, the
AscendC package on an NPU - which read each adapter once per call; "gather" is the
plain-MindSpore twin in `reference.py`. ops/registry.py registers the kernels (Cells call
its select_backend in __init__); the functions below are then usable in GRAPH and PYNATIVE mode.
"""
import mindspore as ms
from mindspore import ops

from cold_ms.errors import InputError
from cold_ms.ops import reference
from cold_ms.ops.infer import elem

DATA_TYPES = (ms.float32, ms.float16, ms.bfloat16)
INDEX_TYPES = (ms.int32, ms.int64)

# Custom primitives, created by ops/registry.py before any graph that uses them compiles.
_SHRINK = None
_EXPAND = None
_ADD_LORA = None


def _dims(x, a, idx, what, axis):
    """x (R, T, k) against a weight stack whose `axis` has length k, one index per row."""
    if len(x) != 3 or len(a) != 3 or len(idx) != 1:
        raise InputError(f"bgmv {what}: expected 3-D data/weights and 1-D indices, got "
                         f"{list(x)}, {list(a)}, {list(idx)}")
    if a[axis] != x[2]:
        raise InputError(f"bgmv {what}: inputs have {x[2]} features but the adapter stack "
                         f"expects {a[axis]}")
    if idx[0] != x[0]:
        raise InputError(f"bgmv {what}: {idx[0]} indices for {x[0]} rows (one index per row)")


def _types(data, index, what):
    data, index = tuple(elem(t) for t in data), elem(index)
    if any(t not in DATA_TYPES for t in data) or len(set(data)) != 1:
        raise InputError(f"bgmv {what}: data must share one dtype of float32/float16/bfloat16, got {data}")
    if index not in INDEX_TYPES:
        raise InputError(f"bgmv {what}: indices must be int32 or int64, got {index}")


def _shrink_shape(x, a, idx):
    _dims(x, a, idx, "shrink", 2)
    return [x[0], x[1], a[1]]


def _shrink_type(x, a, idx):
    _types((x, a), idx, "shrink")
    return ms.float32


def _expand_shape(y, v, b, idx):
    _dims(v, b, idx, "expand", 1)
    if list(y) != [v[0], v[1], b[2]]:
        raise InputError(f"bgmv expand: y has shape {list(y)}, expected {[v[0], v[1], b[2]]}")
    return y


def _expand_type(y, v, b, idx):
    _types((y, b), idx, "expand")
    if elem(v) != ms.float32:
        raise InputError(f"bgmv expand: v must be float32, got {v}")
    return y


def _add_shape(y, x, a, b, idx):
    _shrink_shape(x, a, idx)
    if len(b) == 3 and (b[0] != a[0] or b[1] != a[1]):
        raise InputError(f"bgmv add_lora: lora_a {list(a)} and lora_b {list(b)} disagree on "
                         f"slots or rank")
    return _expand_shape(y, [x[0], x[1], a[1]], b, idx)


def _add_type(y, x, a, b, idx):
    _types((y, x, a, b), idx, "add_lora")
    return y


def register_cpu(library):
    global _SHRINK, _EXPAND, _ADD_LORA
    _SHRINK = ops.Custom(f"{library}:BgmvShrink", _shrink_shape, _shrink_type, func_type="aot")
    _EXPAND = ops.Custom(f"{library}:BgmvExpand", _expand_shape, _expand_type, func_type="aot")
    _ADD_LORA = ops.Custom(f"{library}:BgmvAddLora", _add_shape, _add_type, func_type="aot")


def register_ascend():
    global _SHRINK, _EXPAND, _ADD_LORA
    from cold_ms.ops import ascend  # CANN custom-op package; only importable on an NPU host
    _SHRINK, _EXPAND = ascend.shrink_op(_shrink_shape, _shrink_type), ascend.expand_op(_expand_shape, _expand_type)
    _ADD_LORA = None  # the NPU runs shrink then expand (two kernels, one pipeline each)


def bgmv_shrink(x, lora_a, idx, backend="custom"):
    """v[i] = x[i] @ A[idx[i]]^T in float32; zeros where idx[i] < 0. (R, T, in) -> (R, T, r)."""
    if backend == "gather":
        return reference.shrink_gather(x, lora_a, idx)
    return _SHRINK(x, lora_a, idx)


def bgmv_expand(y, v, lora_b, idx, backend="custom"):
    """y[i] + v[i] @ B[idx[i]]; y[i] unchanged where idx[i] < 0. -> (R, T, out), y's dtype."""
    if backend == "gather":
        return reference.expand_gather(y, v, lora_b, idx)
    return _EXPAND(y, v, lora_b, idx)


def add_lora(y, x, lora_a, lora_b, idx, backend="custom"):
    """y + BGMV(x, A, B, idx): shrink then expand, see the module docstring."""
    if backend == "custom" and _ADD_LORA is not None:
        return _ADD_LORA(y, x, lora_a, lora_b, idx)
    return bgmv_expand(y, bgmv_shrink(x, lora_a, idx, backend), lora_b, idx, backend)
