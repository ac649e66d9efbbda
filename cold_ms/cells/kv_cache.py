"""Static KV cache: one flat Parameter per tensor, rows x kv_heads x length x head_dim.

A flat (rows*kv_heads*length, head_dim) Parameter updated by scatter_update at
(row*kv_heads + h)*length + pos costs the same for any length and lets every row sit at
its own position (measured: other update styles cost 5-20x more at long lengths).
On the custom CPU backend inference calls bypass construct: the whole-layer kernel
(cold_ms/ops/decode.py) writes the tokens' k, v into these Parameters in place.
"""
import numpy as np
import mindspore as ms
from mindspore import nn, ops, Parameter, Tensor
from mindspore.common.initializer import initializer


class KVCache(nn.Cell):
    def __init__(self, rows, kv_heads, length, head_dim, dtype=ms.float32):
        super().__init__()
        self.shape = (rows, kv_heads, length, head_dim)
        self.length_t = Tensor(np.array([length], np.int32))  # positions per row, for the layer kernel
        flat = (rows * kv_heads * length, head_dim)
        self.k_cache = Parameter(initializer("zeros", flat, dtype), name="k_cache",
                                 requires_grad=False)
        self.v_cache = Parameter(initializer("zeros", flat, dtype), name="v_cache",
                                 requires_grad=False)

    def construct(self, k, v, flat_idx, cache_rows):
        """Write k, v (R, KVH, T, D) at flat_idx (R*KVH*T,); return the rows' caches (R, KVH, L, D).

        cache_rows None means the step covers every cache row in order (decode), so the
        cache is read in place; otherwise the listed rows are gathered (prefill of some slots).
        """
        dim = self.shape[3]
        k_all = ops.scatter_update(self.k_cache, flat_idx, k.reshape(-1, dim)).reshape(self.shape)
        v_all = ops.scatter_update(self.v_cache, flat_idx, v.reshape(-1, dim)).reshape(self.shape)
        if cache_rows is None:
            return k_all, v_all
        return ops.gather(k_all, cache_rows, 0), ops.gather(v_all, cache_rows, 0)
