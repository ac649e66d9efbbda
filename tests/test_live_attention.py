"""Attention over the live positions (cells/attention.py; on by default on Ascend, switched on
here): reading the KV cache block by block up
to the step's furthest position gives the logits of attention over the whole cache, for rows at
different positions (one padded), across block boundaries; and blocks past the live positions are
never read (NaN written there changes nothing, where whole-cache attention turns NaN)."""
import numpy as np
import pytest
from mindspore import Tensor

from cold_ms.cells.attention import Attention
from cold_ms.cells.transformer import build_lm
from cold_ms.config import LoraLayout
from cold_ms.formats.model import load_model
from cold_ms.runtime import configure

MAX_LEN, BLOCK = 20, 4
ROWS = 3
i32 = lambda a: Tensor(np.asarray(a, np.int32))  # noqa: E731


def _whole(self, q, k_all, v_all, bias, live):
    return self.whole(q, k_all, v_all, bias)


def _lm(tiny):
    model = load_model(tiny["model_dir"])
    lm, _ = build_lm(model.weights, model.config, LoraLayout(0, 0, ()), ROWS, MAX_LEN, backend="gather")
    for layer in lm.model.layers:
        layer.self_attn.block = BLOCK  # small blocks: several per step, and early exits
        layer.self_attn.live_blocks_on = True  # the Ascend path, here on the CPU
    return lm


def _prefill(lm):
    """12 prompt tokens in rows 0 and 2, 5 in row 1 (its other 7 padding at the scratch position)."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, 90, (ROWS, 12))
    positions = np.tile(np.arange(12), (ROWS, 1))
    positions[1, 5:] = MAX_LEN
    return lm(i32(tokens), i32(positions), i32(range(ROWS)), i32([11, 4, 11]), i32([-1] * ROWS)).asnumpy()


def _decode(lm, steps, start=(12, 5, 12)):
    """Logits of `steps` decode steps, rows at their own positions."""
    out = []
    for s in range(steps):
        positions = np.array(start) + s
        tokens = (positions * 7) % 90 + 3
        out.append(lm(i32(tokens[:, None]), i32(positions[:, None]), i32(range(ROWS)), i32([0] * ROWS),
                      i32([-1] * ROWS)).asnumpy())
    return out


def _poison_from(lm, first):
    """NaN in every layer's cache at positions >= first."""
    for layer in lm.model.layers:
        for cache in (layer.self_attn.cache.k_cache, layer.self_attn.cache.v_cache):
            data = cache.asnumpy().reshape(ROWS, -1, MAX_LEN + 1, cache.shape[-1])
            data[:, :, first:] = np.nan
            cache.set_data(Tensor(data.reshape(cache.shape)))


def _decode_poisoned(lm, start):
    """(one decode step's logits at `start`, the same step's once the cache holds NaN at the
    positions from block 4 (16) on); the prompt written anew first."""
    _prefill(lm)
    clean = _decode(lm, 1, start)[0]
    _poison_from(lm, 4 * BLOCK)
    return clean, _decode(lm, 1, start)[0]


@pytest.mark.parametrize("mode", ["graph", "pynative"])
def test_live_blocks_equal_the_whole_cache_and_blocks_past_them_are_not_read(tiny, mode, monkeypatch):
    """One model of each kind serves both checks; the whole-cache reference runs in PyNative (in
    graph mode the live model compiles its two shapes, the reference none)."""
    configure(mode)
    start = (12, 5, 13)  # furthest position 13: blocks 0-3 (positions < 16) are live
    lm = _lm(tiny)
    live = [_prefill(lm)] + _decode(lm, 6)  # positions 12..17: crosses the block at 16
    clean, poisoned = _decode_poisoned(lm, start)
    assert np.array_equal(poisoned, clean)
    monkeypatch.setattr(Attention, "live_blocks", _whole)
    configure("pynative")
    reference = _lm(tiny)
    whole = [_prefill(reference)] + _decode(reference, 6)
    for got, want in zip(live, whole):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.isnan(_decode_poisoned(reference, start)[1]).all()  # the same poisoned cache, read whole


@pytest.mark.parametrize("device,on", [("CPU", False), ("Ascend", True)])
def test_on_by_default_only_on_ascend(tiny, monkeypatch, device, on):
    """Built, not run: there is no NPU here."""
    monkeypatch.setenv("COLD_MS_DEVICE", device)
    model = load_model(tiny["model_dir"])
    lm, _ = build_lm(model.weights, model.config, LoraLayout(0, 0, ()), 1, 8, backend="gather")
    assert [layer.self_attn.live_blocks_on for layer in lm.model.layers] == [on] * model.config.num_layers
