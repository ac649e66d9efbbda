"""A base linear layer plus LoRA adapters stacked in slots, chosen per row."""
import numpy as np
import mindspore as ms
from mindspore import nn, ops, Parameter, Tensor
from mindspore.common.initializer import initializer

from cold_ms.cells.spec import COMPUTE_DTYPES
from cold_ms.ops.decode import NO_BIAS, NO_LORA
from cold_ms.ops.linear import project
from cold_ms.ops.registry import cpu_kernels, select_backend


def weight_parameter(prepared, shape, compute_dtype):
    """(Parameter, kind) for a prepared weight (ops/prepare.py: its (type code, activation bits)),
    or for a float matrix of `shape` in the compute dtype when there is none; the values are
    assigned by the caller (cells/transformer.py: assign)."""
    if prepared is None:
        return Parameter(initializer("zeros", shape, compute_dtype), name="weight", requires_grad=False), (0, 0)
    dtype = ms.uint8 if prepared.data.dtype == np.uint8 else compute_dtype
    return Parameter(initializer("zeros", prepared.data.shape, dtype), name="weight", requires_grad=False), \
        prepared.kind


class MultiLoraLinear(nn.Cell):
    """y = x W^T (+ b) + BGMV(x, A, B, idx).

    weight: the prepared weight (ops/prepare.py) where the CPU kernels run the projection,
    else (out, in) in the compute dtype, as in the HF checkpoint; lora_a (slots, r, in) as
    PEFT stores lora_A; lora_b (slots, r, out) = scaling * lora_B^T; smaller ranks zero-padded
    to r. A row whose idx is -1 gets the base layer alone. Without slots a plain linear.
    bias: an (out,) bias Parameter in the compute dtype (Qwen2's q, k, v), else none.
    """

    def __init__(self, in_dim, out_dim, num_slots=0, rank=0, backend="custom", prepared=None,
                 compute_dtype=ms.float32, lora_dtype=ms.float32, bias=False):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.backend = select_backend(backend)
        self.kernels = cpu_kernels(self.backend)
        self.weight, self.kind = weight_parameter(prepared, (out_dim, in_dim), compute_dtype)
        self.wtype = Tensor(np.array(self.kind, np.int32))
        self.matmul = ops.MatMul(transpose_b=True)
        self.has_bias = bias
        if bias:
            self.bias = Parameter(initializer("zeros", (out_dim,), compute_dtype), name="bias", requires_grad=False)
        self.has_lora = num_slots > 0 and rank > 0
        if self.has_lora:
            # The kernels read the stacks in lora_dtype (exact: formats/adapters.exact_dtype); MindSpore's
            # ops (gather backend, training, Ascend) in the compute dtype: float32 adapters assigned to
            # float16 stacks are rounded to 11 significant bits (relative error <= 2^-11 = 4.9e-4, values
            # under 6.1e-5 lose bits as subnormals, under 3e-8 become 0); bfloat16 keeps 8 (<= 2^-8 = 3.9e-3).
            dtype = lora_dtype if self.kernels else compute_dtype
            self.lora_a = Parameter(initializer("zeros", (num_slots, rank, in_dim), dtype), name="lora_a")
            self.lora_b = Parameter(initializer("zeros", (num_slots, rank, out_dim), dtype), name="lora_b")

    def lora_pair(self):
        """(A, B) stacks, or the placeholder pair the decode-layer kernels skip."""
        if self.has_lora:
            return self.lora_a, self.lora_b
        return NO_LORA, NO_LORA

    def bias_or_none(self):
        """The bias Parameter, or the placeholder the decode-layer kernels skip."""
        return self.bias if self.has_bias else NO_BIAS

    def construct(self, x, lora_idx):
        """x (R, T, in) -> (R, T, out): float32 on the kernels, else in the compute dtype."""
        if self.has_lora:
            y = project(x, self.weight, self.wtype, self.matmul, self.lora_a, self.lora_b, lora_idx,
                        self.backend, self.kernels)
        else:
            y = project(x, self.weight, self.wtype, self.matmul, None, None, None, self.backend, self.kernels)
        return y + self.bias if self.has_bias else y


def target_linear(name, in_dim, out_dim, spec, bias=False):
    """A MultiLoraLinear for projection `name`, with slots only if some loaded adapter targets it.
    spec: the Cells' construction spec (cells/transformer.py: Spec)."""
    slots = spec.lora.num_slots if name in spec.lora.targets else 0
    return MultiLoraLinear(in_dim, out_dim, slots, spec.lora.rank, spec.backend, spec.weight(name),
                           spec.compute_dtype, COMPUTE_DTYPES[spec.lora.dtype], bias)
