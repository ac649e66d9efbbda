"""The custom BGMV kernels against the gather twin and a numpy reference."""
import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor, nn

from cold_ms.errors import InputError
from cold_ms.ops import bgmv, registry
from cold_ms.runtime import configure

DTYPES = {"float32": ms.float32, "float16": ms.float16, "bfloat16": ms.bfloat16}
# relative tolerance of a result stored in each dtype (float32 sums, rounded once at the end)
RTOL = {"float32": 2e-5, "float16": 2e-3, "bfloat16": 1.6e-2}


class Op(nn.Cell):
    def __init__(self, fn, backend):
        super().__init__()
        self.fn, self.backend = fn, registry.select_backend(backend)

    def construct(self, *args):
        return self.fn(*args, backend=self.backend)


def _tensor(array, dtype):
    return Tensor(array.astype(np.float32)).astype(DTYPES[dtype])


def _as_stored(array, dtype):
    """The float64 values a tensor of `dtype` holds for `array`."""
    if dtype == "bfloat16":
        return _tensor(array, dtype).astype(ms.float32).asnumpy().astype(np.float64)
    return array.astype(np.float32).astype(dtype).astype(np.float64)  # the same two roundings


def _case(rows, seq, n_in, rank, n_out, slots, pattern, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, seq, n_in))
    a = rng.standard_normal((slots, rank, n_in)) / np.sqrt(n_in)
    b = rng.standard_normal((slots, rank, n_out)) / np.sqrt(rank)
    y = rng.standard_normal((rows, seq, n_out))
    idx = {"mixed": rng.integers(-1, slots, rows), "base": np.full(rows, -1),
           "same": np.full(rows, slots - 1)}[pattern]
    return x, a, b, y, idx


def _numpy_add_lora(x, a, b, y, idx):
    out = y.copy()
    for i, s in enumerate(idx):
        if s >= 0:
            out[i] += (x[i] @ a[s].T) @ b[s]
    return out


def _close(got, want, rtol):
    scale = np.abs(want).max() + 1e-6
    assert np.abs(got - want).max() <= rtol * scale * 4, np.abs(got - want).max() / scale


# The whole sweep runs in PyNative (each op call runs the kernel, no graph to compile). Graph mode
# compiles the same primitives into graphs (~0.3 s per graph here): one point per dtype, on the
# multi-token shape, mixed and all-base indices (the other shapes and patterns meet the same code).
SWEEP = [("pynative", dtype, rank) for dtype in DTYPES for rank in (8, 16, 32, 64)] + \
    [("graph", "float32", 8), ("graph", "float16", 32), ("graph", "bfloat16", 64)]
# The last: one slot on several rows, the twin's MatMul path (training's, ops/reference.py).
SHAPES = ((1, 1, 37, 53, 1), (32, 1, 300, 129, 4), (5, 3, 64, 24, 3), (6, 3, 40, 24, 1))


@pytest.mark.parametrize("mode,dtype,rank", SWEEP)
def test_kernels_match_numpy_and_twin(mode, dtype, rank):
    configure(mode)
    idx_type = np.int32 if rank in (8, 32) else np.int64
    graph = mode == "graph"
    # one Cell per op and backend: the two index patterns of a shape share its compiled graph
    cells = {(fn, backend): Op(fn, backend) for fn in (bgmv.bgmv_shrink, bgmv.bgmv_expand, bgmv.add_lora)
             for backend in ("custom", "gather")}
    for rows, seq, n_in, n_out, slots in SHAPES[2:] if graph else SHAPES:
        for pattern in ("mixed", "base") if graph else ("mixed", "base", "same"):
            x, a, b, y, idx = _case(rows, seq, n_in, rank, n_out, slots, pattern, seed=rank)
            tx, ta, tb, ty = (_tensor(v, dtype) for v in (x, a, b, y))
            ti = Tensor(idx.astype(idx_type))
            xs, as_, bs, ys = (_as_stored(v, dtype) for v in (x, a, b, y))
            want_v = np.stack([xs[i] @ as_[s].T if s >= 0 else np.zeros((seq, rank)) for i, s in enumerate(idx)])
            want_y = _numpy_add_lora(xs, as_, bs, ys, idx)
            for backend in ("custom", "gather"):
                v = cells[bgmv.bgmv_shrink, backend](tx, ta, ti)
                assert v.dtype == ms.float32
                _close(v.asnumpy(), want_v, RTOL["float32"])
                out = cells[bgmv.bgmv_expand, backend](ty, v, tb, ti)
                assert out.dtype == DTYPES[dtype]
                _close(out.astype(ms.float32).asnumpy(), want_y, RTOL[dtype])
                fused = cells[bgmv.add_lora, backend](ty, tx, ta, tb, ti)
                _close(fused.astype(ms.float32).asnumpy(), want_y, RTOL[dtype])
            if pattern == "base":  # rows on the base model come back bit-identical
                np.testing.assert_array_equal(out.astype(ms.float32).asnumpy(), ys)


@pytest.mark.parametrize("mode", ["graph", "pynative"])
def test_contract_violations_are_readable(mode):
    configure(mode)
    x, a, b, y, idx = _case(4, 1, 16, 8, 12, 2, "mixed")
    t = lambda v: Tensor(v.astype(np.float32))  # noqa: E731
    ti = Tensor(idx.astype(np.int32))
    shrink = Op(bgmv.bgmv_shrink, "custom")
    with pytest.raises(ValueError, match="inputs have 15 features but the adapter stack expects 16"):
        shrink(t(x[..., :15]), t(a), ti)
    with pytest.raises(ValueError, match="3 indices for 4 rows"):
        shrink(t(x), t(a), ti[:3])
    with pytest.raises(ValueError, match="indices must be int32 or int64"):
        shrink(t(x), t(a), Tensor(idx.astype(np.float32)))
    with pytest.raises(ValueError, match="data must share one dtype"):
        shrink(t(x), t(a).astype(ms.float16), ti)
    with pytest.raises(ValueError, match="disagree on slots or rank"):  # A and B of different ranks
        Op(bgmv.add_lora, "custom")(t(y), t(x), t(a), t(b[:, :7]), ti)


def test_index_beyond_the_slot_count(tiny):
    configure("graph")
    x, a, b, y, _ = _case(3, 1, 16, 8, 12, 2, "mixed")
    bad = Tensor(np.array([0, 2, -1], np.int32))
    with pytest.raises(RuntimeError) as info:
        Op(bgmv.add_lora, "custom")(*(Tensor(v.astype(np.float32)) for v in (y, x, a, b)), bad)
    explained = registry.explain_kernel_error(info.value)
    assert isinstance(explained, InputError)
    assert "adapter index is >= the number of slots" in str(explained)


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown LoRA backend 'cuda'"):
        registry.select_backend("cuda")


def test_without_a_compiler_the_twin_runs_with_one_warning(tmp_path):
    """A fresh process with no compiler and an empty kernel cache falls back to gather."""
    import os
    import subprocess
    import sys
    code = ("import warnings; warnings.simplefilter('always')\n"
            "from cold_ms.ops import registry\n"
            "print(registry.select_backend('custom'), registry.select_backend('custom'))\n")
    env = dict(os.environ, CXX=str(tmp_path / "no-such-compiler"), COLD_MS_CACHE=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["gather", "gather"]
    assert out.stderr.count("custom kernels unavailable (no C++ compiler found") == 1


def test_a_kernel_build_says_so_and_is_timed(tmp_path, monkeypatch, capsys):
    """issue 27, item 5: the first run compiled for ~30 s in silence. A stand-in compiler (it writes
    the output file) shows the message and the time a build adds to the run's timing line."""
    import os
    from cold_ms.ops import _library
    fake = tmp_path / "fake-g++"
    fake.write_text('#!/bin/sh\nfor a; do out="$a"; done\nsleep 0.2\n[ "$1" = --version ] || : > "$out"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("CXX", str(fake))
    monkeypatch.setenv("COLD_MS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(_library, "_built", {})
    target = _library.cpu_library("x86-64")
    assert os.path.isfile(target) and _library.build_seconds() >= 0.2
    err = capsys.readouterr().err
    assert "compiling the CPU kernels for this machine (once; ~30 s on 2 cores)" in err
    assert _library.cpu_library("x86-64") == target and capsys.readouterr().err == ""  # built once
