"""RMSNorm as in HF LLaMA: x * rsqrt(mean(x^2) + eps) * weight, in float32."""
import mindspore as ms
from mindspore import nn, ops, Parameter
from mindspore.common.initializer import initializer


class RMSNorm(nn.Cell):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = Parameter(initializer("ones", (dim,), ms.float32), name="weight",
                                requires_grad=False)

    def construct(self, x):
        variance = ops.mean(x * x, axis=-1, keep_dims=True)
        return self.weight * (x * ops.rsqrt(variance + self.eps))
