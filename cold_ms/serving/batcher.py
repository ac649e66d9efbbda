"""Continuous batching: one scheduler thread drives the engine's slots for many clients.

Each loop iteration admits at most one waiting job into a free slot (its prompt is
prefilled into that slot's rows only) and then runs one decode step for every occupied
slot, so a new request never stalls the others for more than one prefill. A job ends on
its own max_tokens, EOS or stop string, or when its client goes away; its slot is then free
for the next job. The queue is bounded: past it, submit raises QueueFull.
"""
import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

from cold_ms.pipeline.streaming import TextStream


class QueueFull(Exception):
    """The waiting queue is at its limit; retry later."""


@dataclass(eq=False)
class Job:
    request: object                        # batching.Request
    stop: Tuple[str, ...] = ()
    on_event: Optional[Callable] = None    # called from the scheduler thread: (job, text delta, finish reason)
    id: int = 0
    tokens: List[int] = field(default_factory=list)
    text: str = ""
    finish_reason: Optional[str] = None
    cancelled: bool = False
    submitted: float = field(default_factory=time.perf_counter)
    first_token_s: Optional[float] = None
    done: threading.Event = field(default_factory=threading.Event)


class Batcher:
    def __init__(self, engine, tokenizer, max_queue=64, metrics=None):
        self.engine, self.tokenizer, self.max_queue = engine, tokenizer, max_queue
        self.metrics = metrics
        self.slots = [None] * engine.slots        # SlotState with .job
        self.pending = deque()
        self.cond = threading.Condition()
        self._ids = itertools.count(1)
        self._stop = False
        self.thread = threading.Thread(target=self._loop, name="cold-batcher", daemon=True)
        self.thread.start()

    # ---- client side ------------------------------------------------------------------
    def submit(self, request, stop=(), on_event=None):
        """Validate and queue a request; returns its Job (QueueFull when the queue is full)."""
        state = self.engine.new_state(0, request)  # raises InputError/AdapterError now, not later
        job = Job(request, tuple(s for s in stop if s), on_event, next(self._ids))
        state.job, state.stream = job, TextStream(self.tokenizer)
        with self.cond:
            if len(self.pending) >= self.max_queue:
                raise QueueFull(f"{len(self.pending)} requests are waiting")
            self.pending.append(state)
            self.cond.notify()
        return job

    def cancel(self, job):
        """Stop a job (its client left); its slot frees at the next step."""
        with self.cond:
            job.cancelled = True
            self.cond.notify()

    def queue_length(self):
        return len(self.pending)

    def busy_slots(self):
        return sum(st is not None for st in self.slots)

    def close(self):
        with self.cond:
            self._stop = True
            self.cond.notify()
        self.thread.join(timeout=5)

    # ---- scheduler thread ---------------------------------------------------------------
    def _finish(self, s, reason):
        st = self.slots[s]
        job = st.job
        job.finish_reason = job.finish_reason or reason
        self.slots[s] = None
        if job.on_event:
            job.on_event(job, "", job.finish_reason)
        job.done.set()
        if self.metrics:
            self.metrics.finished(job)

    def _deliver(self, s, token):
        st = self.slots[s]
        job = st.job
        if job.first_token_s is None:
            job.first_token_s = time.perf_counter() - job.submitted
        reason = st.accept(token, self.engine.eos_ids)
        job.tokens.append(token)
        st.stream.push(token)
        full = st.stream.sent
        cut = min((full.find(x) for x in job.stop if x in full), default=-1)
        if cut >= 0:
            full, reason = full[:cut], "stop"
        # hold back a tail that could still grow into a stop string
        hold = 0 if reason else max((len(x) - 1 for x in job.stop), default=0)
        ready = full[:max(len(job.text), len(full) - hold)]
        delta, job.text = ready[len(job.text):], ready
        if delta and job.on_event:
            job.on_event(job, delta, None)
        if reason:
            job.text = full
            self._finish(s, reason)

    def _admit(self):
        """Move one waiting job into a free slot and prefill it; False if none could start."""
        with self.cond:
            while self.pending and self.pending[0].job.cancelled:
                self.pending.popleft().job.done.set()
            free = [s for s, st in enumerate(self.slots) if st is None]
            if not self.pending or not free:
                return False
            s = free[0]
            self.slots[s] = self.pending.popleft()
        (slot, token), = self.engine.prefill([s], self.slots)
        self._deliver(slot, token)
        return True

    def _loop(self):
        while True:
            with self.cond:
                while not self._stop and not self.pending and not any(self.slots):
                    self.cond.wait()
                if self._stop:
                    return
                for s, st in enumerate(self.slots):
                    if st is not None and st.job.cancelled:
                        self._finish(s, "cancelled")
            try:
                self._admit()
                if any(self.slots):
                    start = time.perf_counter()
                    for s, token in self.engine.decode(self.slots):
                        self._deliver(s, token)
                    if self.metrics:
                        self.metrics.step(time.perf_counter() - start, self.busy_slots())
            except Exception as e:  # noqa: BLE001 - a failed step must not kill the server
                self._fail_all(e)

    def _fail_all(self, error):
        for s, st in enumerate(self.slots):
            if st is not None:
                st.job.finish_reason = f"error: {error}"
                self._finish(s, "error")
