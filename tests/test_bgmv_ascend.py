"""The AscendC BGMV kernels (custom_ops/ascend) against a numpy reference, on an Ascend NPU.

Needs the custom-op package built and installed (custom_ops/ascend/README.md) and
COLD_MS_DEVICE=Ascend; everywhere else the whole module is skipped. Only CPU-safe modules are
imported at module level: cold_ms.ops.ascend is loaded by select_backend on an Ascend host.
"""
import os

import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn

from cold_ms.ops import bgmv, registry
from cold_ms.runtime import configure

pytestmark = pytest.mark.skipif(
    os.environ.get("COLD_MS_DEVICE") != "Ascend",
    reason="AscendC kernels need an Ascend NPU and the CANN toolkit; not available on this machine")

DTYPES = {"float16": ms.float16, "bfloat16": ms.bfloat16, "float32": ms.float32}
# Relative error of one rounding into each dtype: the kernels sum in float32 (ACCUMULATE covers
# the order of those sums) and round once.
ROUNDING = {"float16": 2 ** -11, "bfloat16": 2 ** -8, "float32": 2 ** -24}
ACCUMULATE = 1e-4
# (rows, tokens, in, out, slots): one decode row; a decode batch whose dims are not multiples of
# 16 (DMA tails); 32 rows over several K tiles (in > 512) and column tiles (out > 2048); a
# prompt chunk longer than one token block (11 tokens).
SHAPES = [(1, 1, 64, 48, 1), (7, 1, 300, 129, 3), (32, 1, 2500, 4200, 4), (3, 11, 96, 80, 2)]


class Op(nn.Cell):
    """A BGMV function as a user calls it: backend chosen once, outside the graph."""

    def __init__(self, fn):
        super().__init__()
        self.fn, self.backend = fn, registry.select_backend("custom")

    def construct(self, *args):
        return self.fn(*args, backend=self.backend)


def _stored(array, dtype):
    """float32 values that a tensor of `dtype` holds for `array` (bfloat16: nearest even)."""
    a = np.ascontiguousarray(array, dtype=np.float32)
    if dtype == "bfloat16":
        bits = a.view(np.uint32).astype(np.uint64)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return bits.astype(np.uint32).view(np.float32)
    return a.astype(dtype).astype(np.float32)


def _tensor(stored, dtype):
    return Tensor(stored).astype(DTYPES[dtype])  # exact: `stored` is representable in dtype


def _indices(pattern, rows, slots, rng):
    if pattern == "base":
        return np.full(rows, -1)
    idx = rng.integers(-1, slots, rows)
    idx[0] = -1  # every mixed batch has a base row next to adapter rows
    if rows > 1:
        idx[1] = slots - 1
    return idx


def _close(got, want, dtype):
    scale = np.abs(want).max() + 1e-6
    err = np.abs(got.astype(np.float64) - want).max() / scale
    assert err <= 8 * ROUNDING[dtype] + ACCUMULATE, err


@pytest.mark.parametrize("mode", ["graph", "pynative"])
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("rank", [8, 16, 64])
@pytest.mark.parametrize("pattern", ["mixed", "base"])
def test_ascend_kernels_match_numpy(mode, dtype, rank, pattern):
    configure(mode)
    shrink, expand = Op(bgmv.bgmv_shrink), Op(bgmv.bgmv_expand)
    assert shrink.backend == expand.backend == "custom"
    rng = np.random.default_rng(rank)
    for case, (rows, seq, n_in, n_out, slots) in enumerate(SHAPES):
        x = _stored(rng.standard_normal((rows, seq, n_in)), dtype)
        a = _stored(rng.standard_normal((slots, rank, n_in)) / np.sqrt(n_in), dtype)  # rank-major
        b = _stored(rng.standard_normal((slots, rank, n_out)) / np.sqrt(rank), dtype)
        y = _stored(rng.standard_normal((rows, seq, n_out)), dtype)
        idx = _indices(pattern, rows, slots, rng)
        index_type = (np.int32, np.int64)[case % 2]

        want_v = np.zeros((rows, seq, rank))
        want_y = y.astype(np.float64)
        for i, s in enumerate(idx):
            if s >= 0:
                want_v[i] = x[i].astype(np.float64) @ a[s].T
                want_y[i] += want_v[i] @ b[s]

        ti = Tensor(idx.astype(index_type))
        v = shrink(_tensor(x, dtype), _tensor(a, dtype), ti)
        assert v.dtype == ms.float32 and v.shape == (rows, seq, rank)
        _close(v.asnumpy(), want_v, "float32")

        out = expand(_tensor(y, dtype), v, _tensor(b, dtype), ti)
        assert out.dtype == DTYPES[dtype] and out.shape == y.shape
        got = out.astype(ms.float32).asnumpy()
        _close(got, want_y, dtype)
        base = idx < 0  # base-model rows: v is exactly zero and y comes back bit for bit
        np.testing.assert_array_equal(v.asnumpy()[base], 0.0)
        np.testing.assert_array_equal(got[base], y[base])
