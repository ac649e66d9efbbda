"""The one Scheduler (Engine.generate and the server both drive it): admission, steps, cancellation."""
import pytest

from cold_ms.pipeline.batching import Request
from cold_ms.pipeline.scheduler import Scheduler
from helpers import engine_for

PROMPTS = [[1, 5, 7, 9], [1, 11, 12], [1, 20, 21, 22, 23], [1, 30]]


@pytest.fixture(scope="module")
def eng(tiny):
    return engine_for(tiny, ("qv",), slots=2, max_len=64)


def _req(prompt, n=6):
    return Request(prompt, adapter="qv", max_new_tokens=n, ignore_eos=True)


def _run(scheduler, limit=200):
    """Step until idle; {index: tokens} and the list of (step kind, busy slots after it)."""
    tokens, steps = {}, []
    for _ in range(limit):
        if not scheduler.has_work():
            return tokens, steps
        for ev in scheduler.step():
            tokens.setdefault(ev.index, []).append(ev.token_id)
        steps.append((scheduler.last_step, scheduler.busy_slots()))
    raise AssertionError("the scheduler did not finish")


def test_admission_fills_every_free_slot_and_joins_ride_along_decode_steps(eng):
    scheduler = Scheduler(eng)
    for i, p in enumerate(PROMPTS):
        scheduler.submit(_req(p, n=2 + 2 * i), i)
    tokens, steps = _run(scheduler)
    assert steps[0] == ("prefill", 2) and scheduler.queue_length() == 0
    kinds = [kind for kind, _ in steps]
    assert kinds.count("prefill") == 1 and kinds.count("mixed") == 2  # each newcomer joins a decode step
    assert tokens == {i: r.token_ids for i, r in enumerate(eng.generate([_req(p, n=2 + 2 * i)
                                                                          for i, p in enumerate(PROMPTS)]))}


@pytest.mark.parametrize("amateur", [None, "base"], ids=["greedy", "cold"])
def test_a_join_costs_running_requests_one_budgeted_step_per_token(tiny, amateur):
    """A budget of 4 rows: a CoLD request decoding takes 2, so a joining CoLD prompt goes in one
    token per step (greedy: 3 decode rows free, 3 tokens). The running request gets a token at
    every step of the join, no step exceeds the budget, and both get the tokens they get alone."""
    eng = engine_for(tiny, ("qv",), slots=2, max_len=64, max_step_tokens=4)
    first, joiner = Request(PROMPTS[0], adapter="qv", amateur=amateur, max_new_tokens=12, ignore_eos=True), \
        Request([1] + list(range(40, 49)), adapter=None, amateur=amateur, max_new_tokens=4, ignore_eos=True)
    alone = [eng.generate([r])[0].token_ids for r in (first, joiner)]
    scheduler = Scheduler(eng)
    scheduler.submit(first, 0)
    got = {0: [], 1: []}
    for ev in scheduler.step() + scheduler.step():
        got[ev.index].append(ev.token_id)
    scheduler.submit(joiner, 1)
    join_steps = 0
    while scheduler.has_work():
        events = scheduler.step()
        plan = eng.stats["last"]
        assert plan.key[1] <= 4 and plan.decode_rows + plan.prefill_tokens * (1 + (amateur is not None)) <= 4
        if plan.prefill_tokens:
            join_steps += 1
            assert 0 in {ev.index for ev in events}  # the running request got its token in this step
        for ev in events:
            got[ev.index].append(ev.token_id)
    assert join_steps == (10 if amateur else 4)  # 10 prompt tokens, 1 (CoLD) or 3 (greedy) a step
    assert [got[0], got[1]] == alone


def test_a_cancelled_request_leaves_at_the_next_step_and_others_are_unchanged(eng):
    alone = [eng.generate([_req(p, n=8)])[0].token_ids for p in PROMPTS[:3]]
    scheduler = Scheduler(eng)
    for i, p in enumerate(PROMPTS[:3]):
        scheduler.submit(_req(p, n=8), i)
    got = {}

    def collect(events):
        for ev in events:
            got.setdefault(ev.index, []).append(ev.token_id)
        return {ev.index for ev in events}
    collect(scheduler.step() + scheduler.step())  # both slots prefilled, one decode step
    assert sorted(scheduler.running()) == [0, 1] and scheduler.queue_length() == 1
    scheduler.cancel(0)
    scheduler.cancel(99)  # unknown: ignored
    # its slot went to request 2, whose prompt is written in the step that decodes request 1
    assert collect(scheduler.step()) == {1, 2} and sorted(scheduler.running()) == [1, 2]
    while scheduler.has_work():
        collect(scheduler.step())
    assert got == {0: alone[0][:2], 1: alone[1], 2: alone[2]}


def test_a_waiting_request_can_be_cancelled(eng):
    scheduler = Scheduler(eng)
    for i, p in enumerate(PROMPTS[:3]):
        scheduler.submit(_req(p, n=3), i)
    scheduler.cancel(2)
    tokens, _ = _run(scheduler)
    assert sorted(tokens) == [0, 1]


def test_a_burst_into_free_slots_does_not_count_as_waiting(eng):
    """A burst that arrives before the stepping thread admits it (held off here by holding its lock):
    on 2 free slots with --max-queue 2, four requests are taken (two for the slots, two waiting)
    and the fifth is refused, naming the two that wait."""
    from cold_ms.serving.batcher import Batcher, QueueFull
    batcher = Batcher(eng, None, max_queue=2)
    try:
        with batcher.cond:
            for i in range(4):
                batcher.submit(_req([1, 5 + i, 9], 2))
            with pytest.raises(QueueFull, match="2 requests are waiting for a slot"):
                batcher.submit(_req([1, 9, 9], 2))
    finally:
        batcher.close()


class _SomeTokensWithoutText:
    """Decodes token t as "<t>" but odd tokens as nothing (as a special token or half a character)."""

    def decode(self, ids):
        return "".join(f"<{t}>" for t in ids if t % 2 == 0)


def test_the_server_hears_of_every_token_even_one_without_text(eng):
    """Batcher events: one per generated token, whatever its text (the stream's chunk per token),
    then one with the finish reason; the deltas join to the whole text."""
    import threading
    from cold_ms.serving.batcher import Batcher
    events, done = [], threading.Event()

    def on_event(job, delta, reason):
        events.append((delta, reason))
        if reason:
            done.set()
    batcher = Batcher(eng, _SomeTokensWithoutText())
    try:
        job = batcher.submit(_req(PROMPTS[0], n=12), on_event=on_event)
        assert done.wait(120)
    finally:
        batcher.close()
    want = eng.generate([_req(PROMPTS[0], n=12)])[0].token_ids
    assert job.tokens == want and any(t % 2 for t in want), want  # some tokens have no text
    assert [d for d, r in events[:-1]] == [f"<{t}>" if t % 2 == 0 else "" for t in want]
    assert events[-1] == ("", "length") and all(r is None for _, r in events[:-1])
