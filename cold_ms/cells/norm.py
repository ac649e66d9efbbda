"""RMSNorm as in HF LLaMA: weight * (x * rsqrt(mean(x^2) + eps)). The statistics are computed in
float32 whatever the compute dtype (a float16 mean of squares overflows once |x| passes 256), then
the normalised x is cast back to the weight's dtype (the compute dtype) before the scale, as HF does."""
import numpy as np
import mindspore as ms
from mindspore import nn, ops, Parameter, Tensor
from mindspore.common.initializer import initializer

from cold_ms.ops import decode
from cold_ms.ops.registry import cpu_kernels


class RMSNorm(nn.Cell):
    def __init__(self, dim, eps, backend="gather", dtype=ms.float32):
        super().__init__()
        self.eps = eps
        self.kernel = cpu_kernels(backend)
        self.eps_t = Tensor(np.array([eps], np.float32))
        self.weight = Parameter(initializer("ones", (dim,), dtype), name="weight",
                                requires_grad=False)

    def construct(self, x):
        if self.kernel:
            return decode.rms_norm(x, self.weight, self.eps_t)
        x = x.astype(ms.float32)
        variance = ops.mean(x * x, axis=-1, keep_dims=True)
        return self.weight * (x * ops.rsqrt(variance + self.eps)).astype(self.weight.dtype)
