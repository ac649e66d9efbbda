"""CoLD generation through the engine against the numpy reference, and engine invariants."""
import numpy as np
import pytest

import numpy_llama as ref
from cold_ms.pipeline.batching import Request, chunk_plan
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


def test_prefill_over_the_token_budget_goes_slot_by_slot(tiny, monkeypatch):
    from cold_ms.pipeline import engine as engine_module
    monkeypatch.setattr(engine_module, "PREFILL_TOKEN_BUDGET", 8)  # 8 rows x a 16-token chunk exceed it
    eng = engine_for(tiny, ("qv", "all"), slots=4)
    got = [r.token_ids for r in eng.generate([_req(p) for p in PROMPTS])]
    assert got == [_ref(tiny, p, "qv", "base") for p in PROMPTS]
    assert all(key[1] == 2 for key in eng.stats["compile_s"] if key[0] == "prefill")


def test_more_requests_than_slots_reuse_freed_slots(tiny):
    eng = engine_for(tiny, ("qv",), slots=2)
    reqs = [_req(p, n=n) for p, n in zip(PROMPTS, (3, 9, 5, 7))]
    got = [r.token_ids for r in eng.generate(reqs)]
    assert got == [_ref(tiny, p, "qv", "base", n=n) for p, n in zip(PROMPTS, (3, 9, 5, 7))]


def test_prefill_plan_covers_the_prompt_at_least_cost():
    # cost = tokens computed (padding included) + the smallest size per call, worked by hand
    assert chunk_plan(80, (16, 64, 256)) == [(0, 64), (64, 16)]      # 112, not 256 + 16
    assert chunk_plan(44, (16, 64, 256)) == [(0, 64)]                # 80, not 3 x 16 + 48
    assert chunk_plan(250, (16, 64, 256)) == [(0, 256)]
    assert chunk_plan(300, (16, 64, 256)) == [(0, 256), (256, 64)]
    assert chunk_plan(3, (4, 8)) == [(0, 4)]


def test_chunked_prefill_equals_one_chunk(tiny):
    rng = np.random.default_rng(4)
    prompts = [list(rng.integers(3, 96, 21)), list(rng.integers(3, 96, 11))]  # plan: 16 + 8
    chunked = engine_for(tiny, ("qv",), slots=2, chunk_sizes=(4, 8, 16))
    got = [r.token_ids for r in chunked.generate([_req(p) for p in prompts])]
    assert got == [_ref(tiny, p, "qv", "base") for p in prompts]
    assert {("prefill", 4, 16), ("prefill", 4, 8)} <= set(chunked.stats["compile_s"])


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
    """33 slots = 66 cache rows: every decode step runs 66 token rows through the layer
    kernel (panel tiles of 8 rows, then 2), and the all-slot prefill exceeds the token budget,
    so the slots prefill one at a time (2 rows x 16 tokens); every request matches the numpy
    reference."""
    rng = np.random.default_rng(8)
    prompts = [list(rng.integers(3, 96, int(rng.integers(2, 9)))) for _ in range(33)]
    pairs = [("qv", "base"), ("all", "qv"), (None, "all")]
    eng = engine_for(tiny, ("qv", "all"), slots=33)
    reqs = [_req(p, *pairs[i % 3], n=4) for i, p in enumerate(prompts)]
    got = [r.token_ids for r in eng.generate(reqs)]
    assert got == [_ref(tiny, p, *pairs[i % 3], n=4) for i, p in enumerate(prompts)]
