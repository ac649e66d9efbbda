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


def test_admission_fills_an_empty_engine_at_once_then_one_slot_per_step(eng):
    scheduler = Scheduler(eng)
    for i, p in enumerate(PROMPTS):
        scheduler.submit(_req(p, n=2 + 2 * i), i)
    tokens, steps = _run(scheduler)
    assert steps[0] == ("prefill", 2) and scheduler.queue_length() == 0
    assert [kind for kind, _ in steps].count("prefill") == 3  # both slots at once, then one newcomer each
    assert tokens == {i: r.token_ids for i, r in enumerate(eng.generate([_req(p, n=2 + 2 * i)
                                                                          for i, p in enumerate(PROMPTS)]))}


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
    assert collect(scheduler.step()) == {2} and sorted(scheduler.running()) == [1, 2]  # its slot went to request 2
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
