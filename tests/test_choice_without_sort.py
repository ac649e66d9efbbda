"""The choice without a full sort (contrastive.choose): the same tokens as the formulation that
sorted the whole vocabulary every step (kept below as the reference, as it was), on random logits
with ties and with maxima outside the plausible set, fixed and entropy schedules, temperature 0
and > 0; and the sort (the draw) and the entropy softmaxes run only when a row asks for them."""
import functools

import numpy as np
import pytest
from mindspore import Tensor, nn, ops

import numpy_llama as ref
from cold_ms.ops import contrastive
from cold_ms.ops.contrastive import cold_scores, draw, entropy, first_argmax
from cold_ms.runtime import configure


def sorted_every_step(expert, amateur, alpha, beta, extra, mask="logit"):
    """The previous contrastive.choose: entropies and the sorting draw computed for every row."""
    he, ha = entropy(expert), entropy(amateur)
    total = he + ha
    weight = ops.select(total > 0, ha / ops.maximum(total, 1e-30), ops.full_like(total, 0.5))
    b = ops.select(extra[:, 0] == 1, beta * weight, beta)
    scores = cold_scores(expert, amateur, alpha, b, mask)
    greedy = first_argmax(scores)
    sampled = draw(scores, extra[:, 1], extra[:, 2], extra[:, 3])
    return ops.select(extra[:, 1] > 0, sampled, greedy)


class _Run(nn.Cell):
    def __init__(self, fn, mask):
        super().__init__()
        self.fn, self.mask = fn, mask

    def construct(self, expert, amateur, alpha, beta, extra):
        return self.fn(expert, amateur, alpha, beta, extra, self.mask)


@functools.lru_cache(maxsize=None)
def _runner(fn, mask, mode):
    """One Cell per function, mask and mode, shared by every case and seed (all of one shape): a
    graph-mode Cell compiles once, where a new Cell per call compiled again (~1 s, 60 times)."""
    return _Run(fn, mask)


def _case(seed, temperatures, schedules, slots=7, vocab=257):
    """Logits on a coarse grid (many ties, the expert's maximum tied on purpose in half the rows),
    and amateurs far below the expert off its plausible set, so the unmasked contrast peaks
    outside the set (a masked-out maximum)."""
    rng = np.random.default_rng(seed)
    e = rng.integers(-8, 9, (slots, vocab)).astype(np.float32) / 2
    e[::2, [3, 100, 200]] = e[::2].max(axis=1, keepdims=True)
    a = e + rng.integers(-2, 3, (slots, vocab)).astype(np.float32) / 2
    low = e < e.max(axis=1, keepdims=True) - 3
    a[low] -= 40
    alpha = rng.choice([0.001, 0.1, 0.5, 1.0], slots).astype(np.float32)
    beta = rng.choice([0.0, 0.5, 2.0], slots).astype(np.float32)
    extra = np.stack([rng.choice(schedules, slots), rng.choice(temperatures, slots),
                      rng.choice([1.0, 0.9, 0.3], slots), rng.uniform(0, 1, slots)], 1).astype(np.float32)
    return e, a, alpha, beta, extra


CASES = [((0.0,), (0,)), ((0.0,), (0, 1)), ((0.0, 0.8), (0,)), ((0.0, 0.7, 1.5), (0, 1)), ((1.0,), (1,))]


@pytest.mark.parametrize("mode", ["graph", "pynative"])
@pytest.mark.parametrize("mask", ["logit", "prob"])
@pytest.mark.parametrize("temperatures,schedules", CASES)
def test_same_tokens_as_sorting_every_step(mode, mask, temperatures, schedules):
    configure(mode)
    for seed in range(3):
        args = [Tensor(x) for x in _case(seed, temperatures, schedules)]
        got = _runner(contrastive.choose, mask, mode)(*args).asnumpy().tolist()
        assert got == _runner(sorted_every_step, mask, mode)(*args).asnumpy().tolist()
        if mask == "logit":
            e, a, alpha, beta, extra = (x.asnumpy() for x in args)
            assert got == [ref.cold_choose(e[s], a[s], alpha[s], beta[s], *extra[s]) for s in range(len(e))]


def test_the_masked_maximum_is_not_chosen():
    """The case built above does what it says: the unmasked contrast's argmax lies off the set."""
    e, a, alpha, beta, _ = _case(0, (0.0,), (0,))
    contrast = 3 * e - 2 * a
    assert any(e[s, contrast[s].argmax()] < e[s].max() - 3 for s in range(len(e)))


def test_greedy_steps_neither_sort_nor_take_entropies(monkeypatch):
    """Op by op (pynative) the branches are plain Python: count the calls."""
    configure("pynative")
    calls = {"draw": 0, "entropy": 0}

    def counted(name, fn):
        def wrapper(*args):
            calls[name] += 1
            return fn(*args)
        return wrapper

    monkeypatch.setattr(contrastive, "draw", counted("draw", draw))
    monkeypatch.setattr(contrastive, "entropy", counted("entropy", entropy))
    e, a, alpha, beta, extra = _case(1, (0.0,), (0,))
    contrastive.choose(*(Tensor(x) for x in (e, a, alpha, beta, extra)))
    assert calls == {"draw": 0, "entropy": 0}
    extra[0, 1], extra[1, 0] = 0.5, 1
    contrastive.choose(*(Tensor(x) for x in (e, a, alpha, beta, extra)))
    assert calls == {"draw": 1, "entropy": 2}
