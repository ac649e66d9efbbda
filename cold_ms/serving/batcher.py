"""The server's side of the Scheduler: one thread steps it while there is work; each HTTP
request is a Job whose tokens become text (stop strings held back) for its client.

Admission, steps, stop rules and cancellation are the Scheduler's (cold_ms/pipeline/
scheduler.py), the same that Engine.generate drives; here are only what HTTP adds: a
bounded queue (QueueFull), stop strings, and ending a job when its client leaves.
"""
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

from cold_ms.pipeline.scheduler import Scheduler
from cold_ms.pipeline.streaming import TextStream

log = logging.getLogger("cold_ms.serve")


class QueueFull(Exception):
    """The waiting queue is at its limit; retry later."""


@dataclass(eq=False)
class Job:
    request: object                        # batching.Request
    stop: Tuple[str, ...] = ()
    on_event: Optional[Callable] = None    # (job, text delta, finish reason), from any thread: once a
                                           # token (the delta possibly empty), then once with the reason
    id: int = 0
    stream: Optional[TextStream] = None    # None for a model without a tokenizer: no text
    tokens: List[int] = field(default_factory=list)
    text: str = ""
    finish_reason: Optional[str] = None    # set once, when the job ends
    submitted: float = field(default_factory=time.perf_counter)
    first_token_s: Optional[float] = None
    last_token_at: Optional[float] = None  # perf_counter() when its latest token was delivered
    stops_from: Optional[int] = None       # where stop strings count from (past min_tokens tokens)
    done: threading.Event = field(default_factory=threading.Event)


class Batcher:
    def __init__(self, engine, tokenizer, max_queue=64, metrics=None):
        self.scheduler = Scheduler(engine)
        self.tokenizer, self.max_queue, self.metrics = tokenizer, max_queue, metrics
        self.jobs = {}                     # id -> Job, until it ends
        self.cond = threading.Condition()  # guards jobs and wakes the stepping thread
        self._ids = itertools.count(1)
        self._stop = False
        self.thread = threading.Thread(target=self._loop, name="cold-batcher", daemon=True)
        self.thread.start()

    # ---- client side ------------------------------------------------------------------
    def submit(self, request, stop=(), on_event=None):
        """Queue a request (the Scheduler validates it: ColdError); QueueFull past max_queue."""
        with self.cond:
            waiting = self.scheduler.waiting_for_slot()
            if waiting >= self.max_queue:
                raise QueueFull(f"{waiting} requests are waiting for a slot")
            job = Job(request, tuple(stop), on_event, next(self._ids),
                      TextStream(self.tokenizer) if self.tokenizer else None)
            self.scheduler.submit(request, job.id)
            self.jobs[job.id] = job
            if self.metrics:
                self.metrics.submitted(request)
            self.cond.notify()
        return job

    def cancel(self, job):
        """End a job whose client left (a no-op once it ended); its slot frees at the next step."""
        with self.cond:
            if not job.done.is_set():
                self.scheduler.cancel(job.id)
                self._end(job, "cancelled")
                self.cond.notify()

    def close(self):
        with self.cond:
            self._stop = True
            self.cond.notify()
        self.thread.join(timeout=5)

    # ---- the stepping thread ----------------------------------------------------------
    def _loop(self):
        while True:
            with self.cond:
                while not self._stop and not self.scheduler.has_work():
                    self.cond.wait()
                if self._stop:
                    return
            start = time.perf_counter()
            try:
                events = self.scheduler.step()
            except Exception:  # noqa: BLE001 - a failed step ends its jobs, not the server
                log.exception("a generation step failed")
                with self.cond:
                    for index in self.scheduler.running():
                        self.scheduler.cancel(index)
                        if index in self.jobs:  # else its client left during the step
                            self._end(self.jobs[index], "error")
                continue
            if self.metrics and self.scheduler.last_step == "decode":
                self.metrics.step(time.perf_counter() - start, self.scheduler.busy_slots())
            with self.cond:
                for ev in events:
                    job = self.jobs.get(ev.index)
                    if job is not None:  # else it ended here already (client gone, stop string)
                        self._deliver(job, ev.token_id, ev.finish_reason)

    def _deliver(self, job, token, reason):
        now = time.perf_counter()
        if job.first_token_s is None:
            job.first_token_s = now - job.submitted
        if self.metrics:
            self.metrics.token(None if job.last_token_at is None else now - job.last_token_at)
        job.last_token_at = now
        full = before = job.stream.sent if job.stream is not None else job.text
        job.tokens.append(token)
        if job.stream is not None:
            job.stream.push(token)
            full = job.stream.sent
        if job.stops_from is None and len(job.tokens) > job.request.min_tokens:
            job.stops_from = len(before)  # a stop string counts from the first token past min_tokens
        found = [full.find(s, job.stops_from) for s in job.stop] if job.stops_from is not None else []
        cut = min((i for i in found if i >= 0), default=-1)
        if cut >= 0:
            if not reason:  # the scheduler still holds the slot
                self.scheduler.cancel(job.id)
            full, reason = full[:cut], "stop"
        # hold back a tail that could still grow into a stop string
        hold = 0 if reason else max((len(s) - 1 for s in job.stop), default=0)
        ready = full[:max(len(job.text), len(full) - hold)]
        delta, job.text = ready[len(job.text):], ready
        # An event for every token, its text possibly empty (half a character, a special token, a
        # held-back tail): a stream then carries a chunk per token as vLLM's does, and a token
        # without text does not look like a stall of two steps to a client timing the chunks.
        if job.on_event:
            job.on_event(job, delta, None)
        if reason:
            job.text = full
            self._end(job, reason)

    def _end(self, job, reason):
        """Finish `job` (the caller holds self.cond and has had the Scheduler free its slot)."""
        job.finish_reason = reason
        del self.jobs[job.id]
        if job.on_event:
            job.on_event(job, "", reason)
        job.done.set()
        if self.metrics:
            self.metrics.finished(job)
