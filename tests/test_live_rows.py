"""Live rows: a step runs only the rows of occupied slots (a greedy request no amateur row),
packed into row buckets, so one request costs on an 8-slot engine what it costs on a 1-slot one."""
import numpy as np
import pytest

import numpy_llama as ref
from cold_ms.pipeline.batching import Request, SlotState
from cold_ms.pipeline.packing import Packer, buckets
from helpers import engine_for

PROMPT = [1, 5, 7, 9, 11]


def _req(amateur="base", beta=0.5, adapter="qv", prompt=PROMPT, n=8):
    return Request(prompt, adapter=adapter, amateur=amateur, alpha=0.1, beta=beta, beta_schedule="fixed", max_new_tokens=n,
                   ignore_eos=True)


def _ref(tiny, req):
    w = lambda name: ref.effective_weights(tiny["weights"], tiny["adapters"].get(name))  # noqa: E731
    am = None if req.amateur is None else w(req.amateur)
    return ref.generate(tiny["cfg"], w(req.adapter), am, req.prompt_ids, req.max_new_tokens, req.alpha, req.beta)


@pytest.fixture(scope="module")
def engines(tiny):
    return {n: engine_for(tiny, ("qv", "all"), slots=n) for n in (1, 8)}


def test_buckets_are_powers_of_two_and_from_24_the_halfway_sizes_up_to_the_budget():
    assert buckets(16) == [1, 2, 4, 8, 16] and buckets(12) == [1, 2, 4, 8, 12] and buckets(1) == [1]
    assert buckets(64) == [1, 2, 4, 8, 16, 24, 32, 48, 64] and buckets(40) == [1, 2, 4, 8, 16, 24, 32, 40]


@pytest.mark.parametrize("amateur, beta, rows", [("base", 0.5, 2), (None, 0.5, 1), ("all", 0.0, 1)],
                         ids=["cold", "greedy", "beta0"])
def test_one_request_on_eight_slots_runs_the_smallest_bucket_and_its_one_slot_tokens(tiny, engines, amateur,
                                                                                    beta, rows):
    req = _req(amateur, beta)
    got = {}
    for n, eng in engines.items():
        eng.stats["compile_s"].clear()
        got[n] = eng.generate([req])[0].token_ids
        # the prompt in one step (5 tokens, one or two rows each), then decode steps of `rows` rows
        assert set(eng.stats["compile_s"]) == {("step", 8 if rows == 1 else 16, min(n, 4 if rows == 1 else 8)),
                                               ("step", rows, 1)}
        assert eng.stats["last"].key == ("step", rows, 1)
    assert got[8] == got[1] == _ref(tiny, req)


def test_greedy_and_cold_requests_in_one_batch_get_their_tokens_alone(tiny, engines):
    reqs = [_req("base", 0.5), _req(None, prompt=[1, 20, 30]), _req("qv", 1.0, adapter="all", prompt=[1, 4]),
            _req("all", 0.0, adapter=None, prompt=[1, 33, 60, 61])]
    alone = [engines[1].generate([r])[0].token_ids for r in reqs]
    assert [r.token_ids for r in engines[8].generate(reqs)] == alone == [_ref(tiny, r) for r in reqs]
    # 2 CoLD + 2 greedy requests decode in 6 rows: the bucket of 8 (4 choices), not 16 rows
    assert engines[8].stats["last"].key == ("step", 8, 4) and engines[8].stats["last"].decode_rows == 6


def _state(slot, req, pos, tokens=()):
    st = SlotState(slot, req, 0, -1, pos)
    st.tokens = list(tokens)
    return st


def test_packed_rows_address_the_cache_by_slot():
    """Worked by hand: slot 1 decodes CoLD at position 6, slot 3 greedy at 4, slot 2 joins with a
    3-token CoLD prompt; 8 slots, cache rows expert s and amateur 8 + s, a budget of 16 rows."""
    packer = Packer(8, True, False, 16, 99)
    slots = [None] * 8
    slots[1] = _state(1, _req(), 6, [42])
    slots[3] = _state(3, _req(None, prompt=[1, 2, 3]), 4, [43])
    slots[2] = _state(2, _req(prompt=[1, 2, 3]), 0)
    plan = packer.plan(slots)
    tokens, positions, cache_rows, pick, lora_idx, alpha, beta, extra = plan.inputs
    # rows: experts [slot 1, slot 3, slot 2 x3] | amateurs [slot 1, slot 2 x3] | 1 pad = 10 of bucket 16
    assert plan.key == ("step", 16, 8) and plan.decode_rows == 3 and plan.prefill_tokens == 3
    assert tokens[:, 0].tolist() == [42, 43, 1, 2, 3, 42, 1, 2, 3] + [0] * 7
    assert positions[:, 0].tolist() == [6, 4, 0, 1, 2, 6, 0, 1, 2] + [99] * 7
    assert cache_rows.tolist() == [1, 3, 2, 2, 2, 9, 10, 10, 10] + [0] * 7
    assert lora_idx.tolist() == [0, 0, 0, 0, 0, -1, -1, -1, -1] + [-1] * 7
    # choices: slot 1 (rows 0 | 5), slot 3 greedy (row 1 with itself, beta 0), slot 2 (rows 4 | 8)
    assert plan.scored == [1, 3, 2]
    assert pick.tolist() == [0, 1, 4, 0, 0, 0, 0, 0] + [5, 1, 8, 0, 0, 0, 0, 0]
    np.testing.assert_array_equal(beta, [0.5, 0, 0.5, 0, 0, 0, 0, 0])
    assert plan.advance == {1: 7, 3: 5, 2: 3}


def _joining(slot, n, amateur="base"):
    st = _state(slot, _req(amateur, prompt=list(range(1, n + 1))), 0)
    st.admitted = slot
    return st


@pytest.mark.parametrize("decoding, joining, rows, prompt_tokens", [
    # nothing decodes: the whole budget of 64 rows, 32 CoLD prompt tokens
    (0, [300], 64, 32),
    # 6 CoLD slots decode (12 rows); 8 occupied slots hold 16 rows, so 12 + 2 * 16 = 44 rows, in the
    # bucket of 48: 18 prompt tokens (36 rows) of the first joining slot, none of the second
    (6, [300, 300], 48, 18),
    # 5 CoLD slots decode (10 rows), one joins: 6 occupied slots hold 12 rows, so 10 + 2 * 12 = 34
    # rows (the 2 free slots' part of the budget, 64 * 2 / 8 = 16, is less), bucket 48: 19 tokens
    (5, [300], 48, 19),
    # one greedy slot decodes, one greedy slot joins: the 6 free slots' part of the budget, 64 * 6 / 8
    # = 48 rows, is more than max(16, 2 * 2): 1 + 48 = 49 rows, bucket 64
    (1, [300], 64, 63),
    # a short prompt goes in whole and the next one takes what is left of the bucket
    (6, [5, 300], 48, 5 + 13),
    # a burst: 3 CoLD prompts join while 2 requests decode (4 rows), so the whole budget: 30 tokens
    # (not 4 + max(2 * 10, 64 * 3 / 8) = 28 rows, bucket 32)
    (2, [300, 300, 300], 64, 30),
])
def test_a_step_holds_the_prompt_share_of_occupied_slots_or_the_free_slots_part(decoding, joining, rows,
                                                                             prompt_tokens):
    greedy = decoding == 1
    packer = Packer(8, True, False, 64, 999)
    slots = [None] * 8
    for s in range(decoding):
        slots[s] = _state(s, _req(None if greedy else "base"), 300, [42])
    for j, n in enumerate(joining):
        slots[decoding + j] = _joining(decoding + j, n, None if greedy else "base")
    plan = packer.plan(slots)
    assert plan.key[1] == rows and plan.prefill_tokens == prompt_tokens
    assert plan.decode_rows == decoding * (1 if greedy else 2)
    # the prompt rows fill the bucket: no padding row (scratch position 999)
    assert plan.decode_rows + (1 if greedy else 2) * prompt_tokens == rows
    assert (plan.inputs[1][:, 0] == 999).sum() == 0


def test_graphs_for_names_the_graphs_a_run_compiles_in_the_order_it_meets_them(tiny):
    """infer.py warms up only engine.graphs_for(its requests): a fresh engine running them to
    max_new_tokens compiles exactly those keys, in that order (prompts of 3 lengths on 2 slots,
    greedy and contrastive requests: prefill chunks, mixed steps and decode buckets)."""
    eng = engine_for(tiny, ("qv", "all"), slots=2, max_step_tokens=24)
    reqs = [_req(prompt=list(range(1, 1 + n)), n=m, amateur=a) for n, m, a in
            ((21, 5, "base"), (4, 9, None), (13, 3, "all"))]
    want = eng.graphs_for(reqs)
    assert 2 <= len(want) < len(eng.graphs())
    eng.generate(reqs)
    assert list(eng.stats["compile_s"]) == want
