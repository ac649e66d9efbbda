"""cold_select on hand-made logits, against the definition computed by hand: the MindSpore
formulation (contrastive.py) and the one-kernel choice the decode graph runs (decode.py)."""
import numpy as np
import pytest
from mindspore import Tensor, nn, ops

from cold_ms.ops import decode, registry
from cold_ms.ops.contrastive import cold_scores, cold_select, first_argmax
from cold_ms.runtime import configure


def _t(x, dtype=np.float32):
    return Tensor(np.asarray(x, dtype))


@pytest.fixture(params=["graph", "pynative"])
def mode(request):
    configure(request.param)
    return request.param


@pytest.fixture(params=["ops", "kernel"])
def impl(request):
    if request.param == "kernel":
        assert registry.select_backend("custom") == "custom" and registry.cpu_kernels("custom")
    return request.param


def _kernel_select(e, a, alpha, beta, mask):
    return decode.cold_select(ops.concat((e, a), 0), alpha, beta, mask)


class _Fn(nn.Cell):
    """Runs one of the functions compiled (graph mode) or op by op (pynative)."""

    def __init__(self, fn, mask="logit"):
        super().__init__()
        self.fn, self.mask = fn, mask

    def construct(self, *args):
        return self.fn(*args, self.mask) if len(args) == 4 else self.fn(*args)


def _select(e, a, alpha, beta, mask="logit", impl="ops"):
    fn = cold_select if impl == "ops" else _kernel_select
    return _Fn(fn, mask)(_t(e), _t(a), _t(alpha), _t(beta)).asnumpy().tolist()


def test_hand_computed_choice(mode, impl):
    # log(0.5) = -0.693: token 2 (s_e = 1.5) is plausible next to max 2.0, token 0 (0.0) is not.
    e = [[0.0, 2.0, 1.5, -5.0]]
    a = [[-9.0, 2.0, 0.0, -9.0]]
    # beta 1: 2*e - a = [9, 2, 3, -1] -> on the mask {1, 2}: token 2 wins (3 > 2).
    assert _select(e, a, [0.5], [1.0], impl=impl) == [2]
    # alpha 0.1 widens nothing here (log 0.1 = -2.3: token 0 at 0.0 is now in the mask) -> token 0 (9).
    assert _select(e, a, [0.1], [1.0], impl=impl) == [0]
    # beta 0 is greedy whatever the amateur says.
    assert _select(e, a, [0.1], [0.0], impl=impl) == [1]


def test_per_slot_alpha_beta(mode, impl):
    e = [[0.0, 2.0, 1.5, -5.0]] * 3
    a = [[-9.0, 2.0, 0.0, -9.0]] * 3
    assert _select(e, a, [0.5, 0.1, 0.1], [1.0, 1.0, 0.0], impl=impl) == [2, 0, 1]


def test_ties_go_to_the_lowest_index(mode, impl):
    assert _select([[1.0, 3.0, 3.0, 3.0]], [[0.0] * 4], [1.0], [0.5], impl=impl) == [1]
    big = np.zeros((2, 50000), np.float32)
    big[:, [40000, 7, 49999]] = 5.0
    big[1, 3] = 6.0
    argmax = first_argmax if impl == "ops" else decode.first_argmax
    assert _Fn(argmax)(_t(big)).asnumpy().tolist() == [7, 3]


def test_alpha_one_keeps_only_the_expert_maximum(mode, impl):
    # With alpha = 1 only expert maximisers are plausible, however strong the contrast.
    assert _select([[1.0, 0.999, 0.0]], [[5.0, -100.0, 0.0]], [1.0], [10.0], impl=impl) == [0]


def test_prob_mask_matches_logit_mask(mode, impl):
    rng = np.random.default_rng(0)
    e = rng.standard_normal((6, 300)).astype(np.float32) * 3
    a = rng.standard_normal((6, 300)).astype(np.float32) * 3
    alpha, beta = [0.05, 0.1, 0.2, 0.5, 0.9, 1.0], [0.1, 0.5, 1.0, 2.0, 0.25, 3.0]
    want = [int(np.argmax(np.where(ei >= np.log(al) + ei.max(), (1 + be) * ei - be * ai, -np.inf)))
            for ei, ai, al, be in zip(e, a, alpha, beta)]
    assert _select(e, a, alpha, beta, "logit", impl) == want
    assert _select(e, a, alpha, beta, "prob", impl) == want


def test_kernel_and_ops_agree_on_a_vocabulary_of_ties(mode):
    # Logits on a coarse grid: many exact ties of scores and many tokens exactly on the mask edge
    # (alpha = 1/e^k), where any difference in the arithmetic would show.
    rng = np.random.default_rng(1)
    e = rng.integers(-8, 4, (8, 49152)).astype(np.float32)
    a = rng.integers(-8, 4, (8, 49152)).astype(np.float32)
    alpha = np.exp(-np.arange(8, dtype=np.float32) / 2).astype(np.float32)
    beta = np.array([0, 0.1, 0.25, 0.5, 1, 2, 4, 0.5], np.float32)
    for mask in ("logit", "prob"):
        assert _select(e, a, alpha, beta, mask, "kernel") == _select(e, a, alpha, beta, mask, "ops")


def test_scores_are_minus_inf_outside_the_mask(mode):
    s = _Fn(cold_scores)(_t([[0.0, 2.0, 1.5]]), _t([[1.0, 1.0, 1.0]]), _t([0.5]), _t([0.5])).asnumpy()[0]
    assert s[0] == -np.inf
    np.testing.assert_allclose(s[1:], [1.5 * 2.0 - 0.5, 1.5 * 1.5 - 0.5], rtol=1e-6)
