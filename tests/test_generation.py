"""CoLD generation through the engine against the numpy reference, and engine invariants."""
import numpy as np
import pytest

import numpy_llama as ref
from cold_ms.errors import ConfigError, InputError
from cold_ms.pipeline.batching import Request
from helpers import engine_for

PROMPTS = [[1, 5, 7, 9], [1, 20, 30], [1, 33, 60, 61, 62, 63, 64, 65, 70, 71, 2, 90], [1, 4]]
N = 10


def _req(prompt, adapter="qv", amateur="base", alpha=0.1, beta=0.5, n=N):
    return Request(prompt, adapter=adapter, amateur=amateur, alpha=alpha, beta=beta,
                   max_new_tokens=n, ignore_eos=True)


def _ref(tiny, prompt, expert, amateur, alpha=0.1, beta=0.5, n=N):
    w = lambda name: ref.effective_weights(tiny["weights"], tiny["adapters"].get(name))  # noqa: E731
    am = None if amateur is None else w(amateur)
    return ref.generate(tiny["cfg"], w(expert), am, prompt, n, alpha, beta)


@pytest.fixture(scope="module")
def cold4(tiny):
    return engine_for(tiny, ("qv", "all"), slots=4)


def test_cold_tokens_match_reference(tiny, cold4):
    res = cold4.generate([_req(p) for p in PROMPTS])
    assert [r.token_ids for r in res] == [_ref(tiny, p, "qv", "base") for p in PROMPTS]
    assert all(r.finish_reason == "length" for r in res)


def test_mixed_adapters_alpha_beta_in_one_batch(tiny, cold4):
    reqs = [_req(PROMPTS[0], "qv", "base", 0.1, 0.5), _req(PROMPTS[1], "all", "qv", 0.2, 1.0),
            _req(PROMPTS[2], None, "all", 0.05, 0.25), _req(PROMPTS[3], "all", None)]
    got = [r.token_ids for r in cold4.generate(reqs)]
    want = [_ref(tiny, PROMPTS[0], "qv", "base", 0.1, 0.5), _ref(tiny, PROMPTS[1], "all", "qv", 0.2, 1.0),
            _ref(tiny, PROMPTS[2], None, "all", 0.05, 0.25), _ref(tiny, PROMPTS[3], "all", None)]
    assert got == want


def test_beta_zero_is_expert_greedy(tiny, cold4):
    greedy = engine_for(tiny, ("qv", "all"), slots=4, contrastive=False)
    fused = [r.token_ids for r in cold4.generate([_req(p, beta=0.0) for p in PROMPTS])]
    plain = [r.token_ids for r in greedy.generate([_req(p, amateur=None) for p in PROMPTS])]
    assert fused == plain == [_ref(tiny, p, "qv", None) for p in PROMPTS]


def test_batch_equals_each_prompt_alone(tiny, cold4):
    alone = engine_for(tiny, ("qv", "all"), slots=1)
    batched = [r.token_ids for r in cold4.generate([_req(p) for p in PROMPTS])]
    assert batched == [alone.generate([_req(p)])[0].token_ids for p in PROMPTS]


def test_prompts_over_the_step_budget_are_written_in_chunks(tiny):
    """A budget of 8 rows: the 12-token CoLD prompt (24 rows) takes several steps, each within
    the budget, while the short prompts join and decode beside it; tokens match the reference."""
    eng = engine_for(tiny, ("qv", "all"), slots=4, max_step_tokens=8)
    got = [r.token_ids for r in eng.generate([_req(p) for p in PROMPTS])]
    assert got == [_ref(tiny, p, "qv", "base") for p in PROMPTS]
    assert {key[1] for key in eng.stats["compile_s"]} <= {1, 2, 4, 8}


def test_more_requests_than_slots_reuse_freed_slots(tiny):
    eng = engine_for(tiny, ("qv",), slots=2)
    reqs = [_req(p, n=n) for p, n in zip(PROMPTS, (3, 9, 5, 7))]
    got = [r.token_ids for r in eng.generate(reqs)]
    assert got == [_ref(tiny, p, "qv", "base", n=n) for p, n in zip(PROMPTS, (3, 9, 5, 7))]


def test_a_long_prompt_in_small_steps_equals_the_reference(tiny):
    rng = np.random.default_rng(4)
    prompts = [list(rng.integers(3, 96, 21)), list(rng.integers(3, 96, 11))]
    chunked = engine_for(tiny, ("qv",), slots=2, max_step_tokens=6)  # 3 CoLD prompt tokens a step
    got = [r.token_ids for r in chunked.generate([_req(p) for p in prompts])]
    assert got == [_ref(tiny, p, "qv", "base") for p in prompts]


def test_a_step_budget_below_one_decode_step_is_refused(tiny):
    with pytest.raises(ConfigError, match="max_step_tokens 7 cannot hold a decode step of 4 slots"):
        engine_for(tiny, ("qv",), slots=4, max_step_tokens=7)


def test_graph_and_pynative_agree(tiny, cold4):
    pyn = engine_for(tiny, ("qv", "all"), slots=4, mode="pynative")
    reqs = [_req(p, "all", "qv", n=4) for p in PROMPTS]
    assert [r.token_ids for r in pyn.generate(reqs)] == [r.token_ids for r in cold4.generate(reqs)]


def test_eos_stops_a_request(tiny, cold4):
    first = _ref(tiny, PROMPTS[0], "qv", "base", n=3)
    eng = engine_for(tiny, ("qv",), slots=1)
    eng.eos_ids = {first[1]}
    res = eng.generate([Request(PROMPTS[0], adapter="qv", max_new_tokens=N)])[0]
    assert res.token_ids == first[:2] and res.finish_reason == "stop"


@pytest.mark.parametrize("min_tokens", [0, 1, 2, 5])
def test_min_tokens_keeps_an_early_eos_as_a_token(tiny, min_tokens):
    """EOS = the 2nd reference token (and its later repeats): it stops the request only once more
    than min_tokens tokens are out; ignore_eos never stops it."""
    want = _ref(tiny, PROMPTS[0], "qv", "base", n=N)
    eos = want[1]
    eng = engine_for(tiny, ("qv",), slots=1)
    eng.eos_ids = {eos}
    res = eng.generate([Request(PROMPTS[0], adapter="qv", alpha=0.1, beta=0.5, max_new_tokens=N, min_tokens=min_tokens)])[0]
    stop = next((i + 1 for i, t in enumerate(want) if t == eos and i + 1 > min_tokens), None)
    assert res.token_ids == want[:stop] and res.finish_reason == ("stop" if stop else "length")
    ignored = eng.generate([Request(PROMPTS[0], adapter="qv", alpha=0.1, beta=0.5, max_new_tokens=N, ignore_eos=True)])[0]
    assert ignored.token_ids == want and ignored.finish_reason == "length"


def test_min_tokens_above_max_new_tokens_is_refused(tiny, cold4):
    with pytest.raises(InputError, match=r"request 0: min_tokens must be in \[0, max_new_tokens=4\], got 5"):
        cold4.generate([Request(PROMPTS[0], adapter="qv", max_new_tokens=4, min_tokens=5)])


def test_custom_kernel_and_gather_twin_give_the_same_tokens(tiny):
    reqs = [_req(PROMPTS[0], "qv", "all"), _req(PROMPTS[2], "all", "base"), _req(PROMPTS[1], None, "qv")]
    runs = {}
    for backend in ("custom", "gather"):
        eng = engine_for(tiny, ("qv", "all"), slots=3, lora_backend=backend)
        assert eng.lora_backend == backend
        runs[backend] = [r.token_ids for r in eng.generate(reqs)]
    assert runs["custom"] == runs["gather"] == [_ref(tiny, PROMPTS[0], "qv", "all"),
                                                _ref(tiny, PROMPTS[2], "all", "base"),
                                                _ref(tiny, PROMPTS[1], None, "qv")]


def test_more_rows_than_a_register_tile(tiny):
    """33 slots = 66 cache rows: a decode step runs 66 token rows through the layer kernel
    (panel tiles of 8 rows, then 2), the whole step budget; every request matches the numpy reference."""
    rng = np.random.default_rng(8)
    prompts = [list(rng.integers(3, 96, int(rng.integers(2, 9)))) for _ in range(33)]
    pairs = [("qv", "base"), ("all", "qv"), (None, "all")]
    eng = engine_for(tiny, ("qv", "all"), slots=33)
    reqs = [_req(p, *pairs[i % 3], n=4) for i, p in enumerate(prompts)]
    got = [r.token_ids for r in eng.generate(reqs)]
    assert got == [_ref(tiny, p, *pairs[i % 3], n=4) for i, p in enumerate(prompts)]
