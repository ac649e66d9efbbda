"""Weight types (cold_ms/wtypes.py) and the CPU kernels that read them, against numpy.

The numpy twins are checked against the `gguf` package (llama.cpp's own reader, an
independent implementation); every kernel is checked against the twins through ctypes, on
odd shapes and 1 to 132 token rows, in the native build and in the AVX2 (-march=haswell) one.
Tolerances: float32 activations sum in float32 over at most 1536 inputs, blocked, so results
are within 2e-6 of the largest output (measured up to 3e-7); integer panels are compared with
their own twin (activations quantised as the kernel does, then exact sums: within 1e-6),
and with float32 activations within the quantisation error: int16 5e-5, int8 2e-2 (measured
3e-5 and 8e-3 on unit-normal activations).
"""
import numpy as np
import pytest
from gguf import GGMLQuantizationType as G
from gguf import quants

from aot_call import aot_call
from cold_ms import wtypes
from cold_ms.ops import panels
from cold_ms.ops._library import cpu_library

KERNEL_TYPES = [t for t in wtypes.TYPES.values() if t.code > 0]
ROWS = (1, 2, 3, 4, 5, 8, 9, 16, 17, 33, 132)


def random_blocks(t, n, rng):
    """n blocks of type t: random bytes (every bit pattern of a quantised value is valid) with
    finite, small fp16 scales written where the type keeps them."""
    raw = rng.integers(0, 256, (n, t.block_bytes), dtype=np.uint8)
    half = lambda k, s: (rng.standard_normal((n, k)) * s).astype(np.float16).view(np.uint8)  # noqa: E731
    if t.name in ("q8_0", "q4_0", "q5_0"):
        raw[:, 0:2] = half(1, 0.02)
    elif t.name == "q4_1":
        raw[:, 0:4] = half(2, 0.02)
    elif t.name == "q4_k":
        raw[:, 0:4] = half(2, 0.002)
    elif t.name == "q6_k":
        raw[:, 208:210] = half(1, 0.0005)
    elif t.name in ("bf16", "f16"):
        raw = wtypes.convert(rng.standard_normal((n, 1)).astype(np.float32), t).data
    return raw


def random_matrix(t, out_dim, in_dim, rng):
    return wtypes.Packed(t, (out_dim, in_dim), random_blocks(t, out_dim * in_dim // t.block, rng)
                         .reshape(out_dim, -1))


@pytest.mark.parametrize("t", KERNEL_TYPES, ids=lambda t: t.name)
def test_numpy_twins_dequantise_as_gguf_does(t):
    raw = random_blocks(t, 53, np.random.default_rng(t.code))
    want = quants.dequantize(raw, G(t.gguf)).reshape(53, t.block)
    np.testing.assert_array_equal(t.to_float(raw), want)


@pytest.mark.parametrize("name", ["q8_0", "q4_0", "q4_1"])
def test_quantisers_write_what_gguf_writes(name):
    t = wtypes.TYPES[name]
    rng = np.random.default_rng(1)
    for scale in (1e-3, 1.0, 300.0):
        x = (rng.standard_normal((40, 96)) * scale).astype(np.float32)
        x[5] = 0  # an all-zero block: scale 0
        want = quants.quantize(x, G(t.gguf))
        assert np.array_equal(wtypes.convert(x, t).data, want)


def test_half_types_round_to_nearest_even():
    x = np.array([[1.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, np.nan, -0.0]], np.float32)
    bf = wtypes.convert(x, wtypes.TYPES["bf16"]).to_float()
    np.testing.assert_array_equal(bf[0, :3], [1.0, 1.0, 1 + 2 ** -6])
    assert np.isnan(bf[0, 3]) and np.signbit(bf[0, 4])
    np.testing.assert_array_equal(wtypes.convert(x, wtypes.TYPES["f16"]).to_float()[0, :3],
                                  x[0, :3].astype(np.float16).astype(np.float32))


def _run(library, x, data, kind, out_dim):
    """DecodeLinear of x (R, 1, in) by a prepared weight of `kind` (type code, activation bits)."""
    y = np.zeros(x.shape[:2] + (out_dim,), np.float32)
    assert aot_call(library, "DecodeLinear", x, data, np.array(kind, np.int32), y) == 0
    return y


@pytest.mark.parametrize("march", ["native", "haswell"])
@pytest.mark.parametrize("t", KERNEL_TYPES, ids=lambda t: t.name)
def test_rows_of_every_type_against_numpy(t, march):
    """Rows as stored, float32 activations: the dequantised weights are the same numbers."""
    library = cpu_library(march)
    rng = np.random.default_rng(7)
    block = max(t.block, 32)
    for out_dim, in_dim in ((37, 2 * block if t.block > 1 else 67), (9, 6 * block if t.block > 1 else 133)):
        w = random_matrix(t, out_dim, in_dim, rng)
        data = w.data.reshape(out_dim, -1, t.block_bytes)
        wf = w.to_float().astype(np.float64)
        for rows in ROWS:
            x = rng.standard_normal((rows, 1, in_dim)).astype(np.float32)
            got = _run(library, x, data, (t.code, 0), out_dim)[:, 0]
            want = x[:, 0].astype(np.float64) @ wf.T
            assert np.abs(got - want).max() <= 2e-6 * np.abs(want).max(), (rows, out_dim, in_dim)


@pytest.mark.parametrize("bits,loss", [(16, 5e-5), (8, 2e-2)])
@pytest.mark.parametrize("name", ["q8_0", "q4_0", "q4_1", "q4_k", "q6_k"])
def test_integer_panels_against_their_twin_and_float_activations(name, bits, loss):
    t = wtypes.TYPES[name]
    library = cpu_library()
    rng = np.random.default_rng(bits)
    for out_dim, in_dim in ((16, 256), (48, 512), (32, 1536)) if t.block == 256 else ((16, 32), (48, 576), (32, 1536)):
        w = random_matrix(t, out_dim, in_dim, rng) if t.from_float is None else \
            wtypes.convert((rng.standard_normal((out_dim, in_dim)) * 0.05).astype(np.float32), t)
        data = panels.to_qpanels(w)
        assert data.shape == (out_dim // 16, in_dim // 32, t.panel_bytes)
        wf = w.to_float().astype(np.float64)
        for rows in ROWS:
            x = rng.standard_normal((rows, 1, in_dim)).astype(np.float32)
            got = _run(library, x, data, (t.code, bits), out_dim)[:, 0]
            twin = panels.quantise_rows(x[:, 0], bits).astype(np.float64) @ wf.T
            exact = x[:, 0].astype(np.float64) @ wf.T
            scale = np.abs(exact).max()
            assert np.abs(got - twin).max() <= 1e-6 * scale, (rows, out_dim, in_dim)
            # random k-quant blocks (random scales and mins, no quantiser here) are far from centred
            # on 0: their loss is measured against the sum of the terms' magnitudes
            bound = scale if t.from_float else (np.abs(x[:, 0]).astype(np.float64) @ np.abs(wf).T).max()
            assert np.abs(got - exact).max() <= loss * bound, (rows, out_dim, in_dim)


def test_a_panel_block_regroups_the_stored_bytes_only():
    """Panel p, block b: GGUF's nibble bytes 4i .. 4i + 3 of each of the 16 rows, side by side."""
    t = wtypes.TYPES["q4_1"]
    w = random_matrix(t, 32, 64, np.random.default_rng(3))
    p = panels.to_qpanels(w)
    raw = w.data.reshape(32, 2, 20)  # (row, block, bytes)
    for panel, block, i, o, j in ((1, 1, 2, 5, 3), (0, 0, 0, 0, 0), (1, 0, 3, 15, 1)):
        assert p[panel, block, 64 * i + 4 * o + j] == raw[16 * panel + o, block, 4 + 4 * i + j]
    assert p[1, 1, 256 + 2 * 5: 256 + 2 * 5 + 2].tobytes() == raw[21, 1, 0:2].tobytes()  # row 21's scale


def test_k_quant_panels_hold_each_sub_blocks_scale_and_values():
    """q4_k: q4_1's nibble bytes of a sub-block with d sc and -dmin m in float32; q6_k: q - 32 + 32
    in bytes with a float32 d sc per half block. Written from wtypes' layouts, spot by spot."""
    rng = np.random.default_rng(5)
    w = random_matrix(wtypes.TYPES["q4_k"], 32, 512, rng)
    p, raw = panels.to_qpanels(w), w.data.reshape(32, 2, 144)
    q, scale, low = wtypes.q4_k_parts(raw[21, 1:2])  # row 21 = panel 1, output 5; block of 256 no. 1
    b = 8 + 3  # its sub-block 3: the matrix's block 11 of 32
    assert p[1, b, 64 * 2 + 4 * 5 + 1] == q[0, 3, 9] | (q[0, 3, 25] << 4)  # group 2, input 1: values 9, 25
    assert p[1, b, 256 + 4 * 5: 260 + 4 * 5].view(np.float32)[0] == scale[0, 3]
    assert p[1, b, 320 + 4 * 5: 324 + 4 * 5].view(np.float32)[0] == -low[0, 3]
    w = random_matrix(wtypes.TYPES["q6_k"], 16, 256, rng)
    p, (q, sc, d) = panels.to_qpanels(w), wtypes.q6_k_parts(w.data)
    assert p[0, 6, 64 * 5 + 4 * 7 + 2] == q[7, 32 * 6 + 22]  # output 7, input 22 of block 6 (group 5)
    assert p[0, 6, 576 + 4 * 7: 580 + 4 * 7].view(np.float32)[0] == sc[7, 13] * d[7, 0]  # its second half


@pytest.mark.parametrize("t", KERNEL_TYPES, ids=lambda t: t.name)
def test_embedding_rows_are_the_stored_values(t):
    library = cpu_library()
    rng = np.random.default_rng(11)
    in_dim = 2 * max(t.block, 32)
    w = random_matrix(t, 48, in_dim, rng)
    tokens = rng.integers(0, 48, (3, 5)).astype(np.int32)
    layouts = [(w.data.reshape(48, -1, t.block_bytes), 0)] + ([(panels.to_qpanels(w), 16)] if t.panel_bytes else [])
    for data, bits in layouts:
        rows = np.zeros((3, 5, in_dim), np.float32)
        assert aot_call(library, "EmbedRows", data, np.array([t.code, bits], np.int32), tokens, rows) == 0
        np.testing.assert_array_equal(rows, w.to_float()[tokens])


def test_bad_operands_fail_with_a_reason():
    import ctypes
    library = cpu_library()
    lib = ctypes.CDLL(library)
    lib.BgmvLastError.restype = ctypes.c_char_p
    x, y = np.ones((1, 1, 32), np.float32), np.zeros((1, 1, 4), np.float32)
    data = np.zeros((4, 1, 34), np.uint8)
    assert aot_call(library, "DecodeLinear", x, data, np.array([99, 0], np.int32), y) == 1
    assert b"unknown weight type code" in lib.BgmvLastError()
    assert aot_call(library, "DecodeLinear", x, data, np.array([wtypes.TYPES["q4_0"].code, 0], np.int32), y) == 1
    assert b"neither a block nor a panel block" in lib.BgmvLastError()


def test_the_avx2_build_takes_the_avx2_paths():
    import ctypes
    lib = ctypes.CDLL(cpu_library("haswell"))
    lib.ColdKernelPaths.restype = ctypes.c_char_p
    assert lib.ColdKernelPaths().decode() == "avx2" and lib.ColdIntegerPanels() == 0


@pytest.mark.parametrize("t", [t for t in wtypes.TYPES.values() if t.widens_to], ids=lambda t: t.name)
def test_a_widened_type_holds_the_same_values(t):
    """`--weights auto` reads q5_0 as q8_0 integer panels: every value must be the stored one."""
    w = random_matrix(t, 48, 96, np.random.default_rng(7))
    wide = wtypes.widen(w)
    assert wide.wtype.name == t.widens_to[0] and wide.wtype.panel_bytes
    np.testing.assert_array_equal(wide.to_float(), w.to_float())
