"""The next-token choice with its per-slot knobs (contrastive.EXTRA): the entropy schedule of
beta and temperature / top-p draws, by the select kernel and the MindSpore formulation, against
the numpy twin of the definitions (numpy_llama.cold_choose)."""
import numpy as np
import pytest
from mindspore import Tensor, nn

import numpy_llama as ref
from cold_ms.ops import contrastive, decode, registry
from cold_ms.runtime import configure


class Kernel(nn.Cell):
    def construct(self, logits, alpha, beta, extra):
        return decode.cold_select(logits, alpha, beta, "logit", extra)


class Ops(nn.Cell):
    def construct(self, expert, amateur, alpha, beta, extra):
        return contrastive.choose(expert, amateur, alpha, beta, extra, "logit")


@pytest.fixture(autouse=True)
def _ready():
    configure("graph")
    assert registry.select_backend("custom") == "custom"


def _case(seed, slots=6, vocab=300):
    rng = np.random.default_rng(seed)
    e = (rng.standard_normal((slots, vocab)) * 3).astype(np.float32)
    a = (e + rng.standard_normal((slots, vocab))).astype(np.float32)
    alpha = rng.choice([0.001, 0.05, 0.3, 1.0], slots).astype(np.float32)
    beta = rng.choice([0.0, 0.5, 2.0], slots).astype(np.float32)
    extra = np.stack([rng.integers(0, 2, slots), rng.choice([0.0, 0.7, 1.5], slots),
                      rng.choice([1.0, 0.9, 0.3, 0.0], slots), rng.uniform(0, 1, slots)], 1).astype(np.float32)
    return e, a, alpha, beta, extra


def _want(e, a, alpha, beta, extra):
    return [ref.cold_choose(e[s], a[s], alpha[s], beta[s], *extra[s]) for s in range(len(e))]


@pytest.fixture(scope="module")
def choosers():
    """The kernel and the ops, built once: every seed's case has the same shapes, so each Cell
    compiles its graph once for the sweep."""
    return Kernel(), Ops()


@pytest.mark.parametrize("seed", range(8))
def test_kernel_and_ops_choose_as_the_definition(seed, choosers):
    kernel, ops = choosers
    e, a, alpha, beta, extra = _case(seed)
    want = _want(e, a, alpha, beta, extra)
    t = lambda x: Tensor(x)  # noqa: E731
    assert kernel(t(np.concatenate([e, a])), t(alpha), t(beta), t(extra)).asnumpy().tolist() == want
    assert ops(t(e), t(a), t(alpha), t(beta), t(extra)).asnumpy().tolist() == want


def test_without_amateur_rows_the_expert_alone_is_sampled():
    e, _, alpha, beta, extra = _case(11)
    got = Kernel()(Tensor(e), Tensor(alpha), Tensor(beta), Tensor(extra)).asnumpy().tolist()
    assert got == _want(e, e, alpha, beta, extra)


def test_the_entropy_schedule_weighs_the_contrast_by_the_amateurs_share():
    """A sure expert (low entropy) against an unsure amateur keeps nearly all of beta; the
    reverse nearly none: the choice flips between the amateur-penalised and the plain token."""
    vocab = 64
    e = np.zeros(vocab, np.float32)
    e[[3, 5]] = [10.0, 9.9]  # the expert prefers 3, barely
    a = np.zeros(vocab, np.float32)
    a[3] = 4.0  # the amateur likes 3 too: contrast moves to 5
    assert ref.cold_choose(e, a, 0.1, 1.0, schedule=0) == 5
    flat = np.full(vocab, 0.0, np.float32)
    assert ref.entropy(flat) > ref.entropy(e)
    got = Kernel()(Tensor(np.stack([e, e, a, np.full(vocab, 20.0, np.float32) * (np.arange(vocab) == 3)])),
                   Tensor(np.full(2, 0.1, np.float32)), Tensor(np.full(2, 1.0, np.float32)),
                   Tensor(np.array([[1, 0, 1, 0], [1, 0, 1, 0]], np.float32))).asnumpy().tolist()
    # slot 0: amateur a (entropy near the expert's): about half of beta still moves it to 5;
    # slot 1: an amateur sure of 3 (entropy ~0): the weight ~0, the expert's own choice stays
    assert got == [ref.cold_choose(e, a, 0.1, 1.0, schedule=1),
                   ref.cold_choose(e, np.full(vocab, 20.0, np.float32) * (np.arange(vocab) == 3), 0.1, 1.0, 1)]
    assert got[1] == 3


def test_draws_follow_the_nucleus_distribution():
    """Over many u, the kernel's draws land on each token as often as its renormalised
    probability inside the nucleus says (and never outside it)."""
    vocab, n = 12, 4000
    e = np.log(np.array([8, 4, 2, 1, 1, 0.5] + [0.01] * 6, np.float32))
    u = (np.arange(n, dtype=np.float32) + 0.5) / n
    extra = np.stack([np.zeros(n), np.ones(n), np.full(n, 0.8), u], 1).astype(np.float32)
    ids = Kernel()(Tensor(np.tile(e, (n, 1))), Tensor(np.full(n, 1e-3, np.float32)), Tensor(np.zeros(n, np.float32)),
                   Tensor(extra)).asnumpy()
    p = np.exp(e) / np.exp(e).sum()
    keep = int(np.sum(np.concatenate([[0], np.cumsum(p)[:-1]]) < 0.8))  # tokens 0..2: 8/16 + 4/16 < 0.8
    share = np.bincount(ids, minlength=vocab) / n
    np.testing.assert_allclose(share[:keep], p[:keep] / p[:keep].sum(), atol=1e-3)
    assert share[keep:].sum() == 0


def _draws(engine, reqs):
    return [r.token_ids for r in engine.generate(reqs)]


def test_engine_draws_repeat_with_the_seed_alone_or_in_a_batch(tiny):
    """Same seed, same tokens (alone, beside other requests, graph or pynative); another seed,
    other tokens. The draws follow the numpy twin step by step (the expert's reference logits)."""
    from cold_ms.pipeline.batching import Request
    from helpers import engine_for
    req = lambda seed, **kw: Request([5, 9, 14, 3], adapter="qv", amateur="base", alpha=0.01, beta=0.5,  # noqa: E731
                                     max_new_tokens=10, ignore_eos=True, temperature=1.5, top_p=0.95, seed=seed, **kw)
    eng = engine_for(tiny, ("qv",), slots=3)
    alone = _draws(eng, [req(7)])[0]
    mixed = _draws(eng, [req(1), req(7), Request([8, 8, 2], adapter="qv", amateur=None, max_new_tokens=5)])
    assert mixed[1] == alone and _draws(eng, [req(7)])[0] == alone
    assert mixed[0] != alone  # another seed
    pyn = engine_for(tiny, ("qv",), slots=1, mode="pynative")
    assert _draws(pyn, [req(7)])[0] == alone
    gather = engine_for(tiny, ("qv",), slots=1, lora_backend="gather")
    assert _draws(gather, [req(7)])[0] == alone


def test_engine_entropy_schedule_follows_the_definition(tiny):
    """CoLD with the entropy schedule of beta, every step against the numpy model's logits."""
    from cold_ms.pipeline.batching import Request
    from helpers import engine_for
    eng = engine_for(tiny, ("all",), activations="float32")
    expert_w = ref.effective_weights(tiny["weights"], tiny["adapters"]["all"])
    base_w = ref.effective_weights(tiny["weights"])
    seq = [5, 9, 14, 3, 40]
    got = eng.generate([Request(seq, adapter="all", amateur="base", alpha=0.05, beta=1.0, max_new_tokens=8,
                                ignore_eos=True, beta_schedule="entropy")])[0].token_ids
    for token in got:
        s_e, s_a = ref.forward(expert_w, tiny["cfg"], seq)[-1], ref.forward(base_w, tiny["cfg"], seq)[-1]
        assert token == ref.cold_choose(s_e.astype(np.float32), s_a.astype(np.float32), 0.05, 1.0, schedule=1)
        seq.append(token)


def test_bad_choice_knobs_are_refused(tiny):
    from cold_ms.errors import ConfigError
    from cold_ms.pipeline.batching import Request
    from helpers import engine_for
    eng = engine_for(tiny, ("qv",))
    for bad, match in ((dict(temperature=-1), "temperature"), (dict(top_p=0), "top_p"),
                       (dict(beta_schedule="cosine"), "beta schedule"), (dict(seed=-3), "seed"),
                       (dict(temperature=float("inf")), "temperature")):
        with pytest.raises(ConfigError, match=match):
            eng.generate([Request([5, 9], adapter="qv", **bad)])
