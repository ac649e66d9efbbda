"""Gather-BMM twin of the BGMV kernels: the fallback backend and the test oracle.

It materialises each row's adapter matrices (R x in x r), which is what the custom
kernels avoid; the arithmetic is the definition in `cold_ms.ops.bgmv`, in float32. A stack of
one slot (training, one adapter) skips the gather: every row's adapter is that slot, so the
term is two plain MatMuls over all R*T tokens, and the rows with idx < 0 are masked on the
rank-r v (their backward is then two MatMuls too, not a scatter-add into the stack).
"""
import mindspore as ms
from mindspore import ops


_BMM_NT = ops.BatchMatMul(transpose_b=True)  # x @ A^T without materialising A^T
_MM_NT = ops.MatMul(transpose_b=True)


def _f32(t):
    # the CPU Gather has no bfloat16 kernel, and the twin accumulates in float32 anyway
    return t if t.dtype == ms.float32 else t.astype(ms.float32)


def _row_weights(stack, idx):
    """stack[idx[i]] for every row in float32, slot 0 standing in for idx < 0 (masked later). The
    rows are widened after the gather, so a float16 stack is never copied whole to float32; the
    CPU Gather has no bfloat16 kernel, so a bfloat16 stack is widened first."""
    if stack.dtype == ms.bfloat16:
        stack = stack.astype(ms.float32)
    return _f32(ops.gather(stack, ops.maximum(idx, 0), 0))


def shrink_gather(x, lora_a, idx):
    """v[i] = x[i] @ A[idx[i]]^T; rows with idx < 0 give zeros. x (R, T, in) -> (R, T, r) float32."""
    rows, seq, rank = x.shape[0], x.shape[1], lora_a.shape[1]
    mask = (idx >= 0).astype(ms.float32).reshape(-1, 1, 1)
    if lora_a.shape[0] == 1:  # one slot: (R*T, in) @ A[0]^T, no per-row copies of A; widened before the
        # reshape (the CPU Reshape has no bfloat16 kernel)
        v = _MM_NT(_f32(x).reshape(rows * seq, -1), _f32(lora_a).reshape(rank, -1)).reshape(rows, seq, rank)
    else:
        v = _BMM_NT(_f32(x), _row_weights(lora_a, idx))
    return v * mask


def expand_gather(y, v, lora_b, idx):
    """y[i] + v[i] @ B[idx[i]]; rows with idx < 0 are left unchanged. y (R, T, out) -> y's dtype."""
    rows, seq, rank = v.shape[0], v.shape[1], lora_b.shape[1]
    mask = (idx >= 0).astype(ms.float32).reshape(-1, 1, 1)
    if lora_b.shape[0] == 1:  # one slot: the mask on the rank-r v costs r values a token, not `out`
        delta = ops.matmul((v * mask).reshape(rows * seq, rank), _f32(lora_b).reshape(rank, -1))
        out = _f32(y) + delta.reshape(rows, seq, -1)
    else:
        out = _f32(y) + ops.bmm(v, _row_weights(lora_b, idx)) * mask
    return out if y.dtype == ms.float32 else out.astype(y.dtype)
