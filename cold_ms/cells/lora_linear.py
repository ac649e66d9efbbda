"""A base linear layer plus LoRA adapters stacked in slots, chosen per row."""
import mindspore as ms
from mindspore import nn, ops, Parameter
from mindspore.common.initializer import initializer

from cold_ms.ops import decode, panels
from cold_ms.ops.bgmv import select_backend
from cold_ms.ops.decode import NO_LORA
from cold_ms.ops.linear import project


class MultiLoraLinear(nn.Cell):
    """y = x W^T + BGMV(x, A, B, idx).

    weight (out, in) as in the HF checkpoint, or in panels (ops/panels.py) where the whole-layer
    CPU kernels run the projection; lora_a (slots, r, in) as PEFT stores lora_A;
    lora_b (slots, r, out) = scaling * lora_B^T; smaller ranks zero-padded to r. A row whose
    idx is -1 gets the base layer alone. Without slots the layer is a plain linear.
    """

    def __init__(self, in_dim, out_dim, num_slots=0, rank=0, backend="custom"):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.backend = select_backend(backend)
        stored = panels.shape(out_dim, in_dim, decode.fused_layers(self.backend))
        self.weight = Parameter(initializer("zeros", stored, ms.float32), name="weight", requires_grad=False)
        self.matmul = ops.MatMul(transpose_b=True)
        self.has_lora = num_slots > 0 and rank > 0
        if self.has_lora:
            self.lora_a = Parameter(initializer("zeros", (num_slots, rank, in_dim), ms.float32),
                                    name="lora_a")
            self.lora_b = Parameter(initializer("zeros", (num_slots, rank, out_dim), ms.float32),
                                    name="lora_b")

    def lora_pair(self):
        """(A, B) stacks, or the placeholder pair the decode-layer kernels skip."""
        if self.has_lora:
            return self.lora_a, self.lora_b
        return NO_LORA, NO_LORA

    def construct(self, x, lora_idx):
        """x (R, T, in) -> (R, T, out)."""
        if self.has_lora:
            return project(x, self.weight, self.matmul, self.lora_a, self.lora_b, lora_idx, self.backend)
        return project(x, self.weight, self.matmul, None, None, None, self.backend)


def target_linear(name, in_dim, out_dim, layout, backend):
    """A MultiLoraLinear with slots only if some loaded adapter targets module `name`."""
    slots = layout.num_slots if name in layout.targets else 0
    return MultiLoraLinear(in_dim, out_dim, slots, layout.rank, backend)
