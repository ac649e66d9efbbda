"""The decode kernels against numpy, odd sizes included. (The whole-layer kernel is checked end
to end: tests/test_model_parity.py and tests/test_generation.py run prompt chunks and decode
steps through it against the numpy model.)"""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

from cold_ms.errors import InputError
from cold_ms.ops import decode, linear, panels, registry
from cold_ms.runtime import configure


F32 = Tensor(np.zeros(2, np.int32))  # the kind of a float32 weight: type code 0, no integer activations


class Project(nn.Cell):
    """linear.project with the custom kernels; LoRA stacks when given."""

    def construct(self, x, w, a=None, b=None, idx=None):
        return linear.project(x, w, F32, None, a, b, idx, "custom", True)


class Fn(nn.Cell):
    def __init__(self, fn, *static):
        super().__init__()
        self.fn, self.static = fn, static

    def construct(self, *args):
        return self.fn(*args, *self.static)


@pytest.fixture(autouse=True, params=["graph", "pynative"])
def _ready(request):
    configure(request.param)
    assert registry.select_backend("custom") == "custom" and registry.cpu_kernels("custom")


def _t(a, dtype=np.float32):
    return Tensor(np.asarray(a, dtype))


# row-major: vector tails; several work items, tile tails. Panels: a work item of 3 panels
# and a last one of 1 or 2 (80 and 32 outputs), an odd input size.
@pytest.mark.parametrize("n_in,n_out,layout", [(37, 53, "rows"), (600, 197, "rows"), (37, 80, "panels"),
                                               (600, 32, "panels"), (576, 192, "panels")])
# row-major: up to 16 token rows the GEMV tiles, then 16-row blocks, padded or not. Panels:
# tiles of 8, 4, 2 and 1 rows.
@pytest.mark.parametrize("rows,seq", [(1, 1), (2, 1), (3, 1), (5, 3), (8, 2), (16, 1), (3, 8), (5, 7), (4, 33)])
def test_decode_linear_with_and_without_lora(rows, seq, n_in, n_out, layout):
    rng = np.random.default_rng(rows)
    rank, slots = 8, 3
    x, w = rng.standard_normal((rows, seq, n_in)), rng.standard_normal((n_out, n_in))
    a, b = rng.standard_normal((slots, rank, n_in)) * 0.3, rng.standard_normal((slots, rank, n_out)) * 0.3
    idx = rng.integers(-1, slots, rows)
    stored = panels.to_panels(w.astype(np.float32)) if layout == "panels" else w
    np.testing.assert_allclose(Project()(_t(x), _t(stored)).asnumpy(), x @ w.T, rtol=1e-5, atol=1e-4)
    want = x @ w.T + np.stack([x[i] @ a[s].T @ b[s] if s >= 0 else np.zeros((seq, n_out)) for i, s in enumerate(idx)])
    got = Project()(_t(x), _t(stored), _t(a), _t(b), _t(idx, np.int32))
    np.testing.assert_allclose(got.asnumpy(), want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("stack", [ms.float16, ms.bfloat16])
@pytest.mark.parametrize("rows,seq,n_in,n_out", [(1, 1, 576, 192), (3, 5, 37, 53), (2, 1, 600, 1536)])
def test_lora_stacks_kept_in_half_precision(rows, seq, n_in, n_out, stack):
    """float16/bfloat16 stacks (as PEFT saves adapters) are read as the same numbers: the result
    is the float32 stacks' of those values (up to the compiler fusing a multiply-add in one
    instantiation and not the other: ~1 ulp) and numpy's."""
    rng = np.random.default_rng(rows * 7 + seq)
    rank, slots = 8, 2
    x, w = rng.standard_normal((rows, seq, n_in)), rng.standard_normal((n_out, n_in))
    a, b = rng.standard_normal((slots, rank, n_in)) * 0.3, rng.standard_normal((slots, rank, n_out)) * 0.3
    a, b = (half_values(v, stack) for v in (a, b))
    idx = rng.integers(-1, slots, rows)
    full = Project()(_t(x), _t(w), _t(a), _t(b), _t(idx, np.int32)).asnumpy()
    half = Project()(_t(x), _t(w), _t(a).astype(stack), _t(b).astype(stack), _t(idx, np.int32)).asnumpy()
    np.testing.assert_allclose(half, full, rtol=1e-6, atol=2e-6)
    want = x @ w.T + np.stack([x[i] @ a[s].T @ b[s] if s >= 0 else np.zeros((seq, n_out)) for i, s in enumerate(idx)])
    np.testing.assert_allclose(half, want, rtol=1e-5, atol=1e-4)


def half_values(v, dtype):
    """float32 values that float16 (or bfloat16: the top 16 bits) holds exactly."""
    if dtype == ms.float16:
        return v.astype(np.float16).astype(np.float32)
    return (v.astype(np.float32).view(np.uint32) & 0xFFFF0000).view(np.float32)


def test_rms_norm():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((3, 2, 20)), rng.standard_normal(20)
    want = w * x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5)
    got = Fn(decode.rms_norm)(_t(x), _t(w), _t([1e-5]))
    np.testing.assert_allclose(got.asnumpy(), want, rtol=1e-5, atol=1e-5)


def test_decode_linear_rejects_bad_shapes():
    with pytest.raises(InputError, match="do not fit"):
        Project()(_t(np.ones((1, 1, 5))), _t(np.ones((4, 6))))
    with pytest.raises(InputError, match="do not fit"):  # panels must be 16 outputs wide
        Project()(_t(np.ones((1, 1, 5))), _t(np.ones((2, 5, 8))))
