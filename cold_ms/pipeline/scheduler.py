"""The one scheduler: waiting requests, decode slots, admission, steps, stop rules, cancellation.

Engine.stream/generate and the HTTP server both drive a Scheduler, so a request is admitted,
stepped and stopped by the same code whichever door it came in by.

Admission policy: every free slot takes the next waiting request at the start of a step. A step
carries the next token of every decoding slot plus as many prompt tokens of the joining slots
(first come, first served) as the engine's step budget leaves (chunked prefill), so a decoding
request gets a token at every step however many prompts join, and a cancellation takes effect at
the next step.

Thread use: one thread calls step(); submit(), cancel() and the counters may be called
from any thread.
"""
import threading
from collections import deque
from dataclasses import dataclass
from typing import List, Optional


@dataclass
class Event:
    index: int                     # the key the request was submitted under
    token_id: int
    finish_reason: Optional[str]   # None while the request continues


class Scheduler:
    def __init__(self, engine):
        self.engine = engine
        self.slots = [None] * engine.slots   # batching.SlotState or None
        self.pending = deque()
        self._cancelled = set()              # indices to drop at the next step
        self._lock = threading.Lock()
        self.last_step = None                # what step() ran last: "prefill", "mixed", "decode" or None
        self._admissions = 0

    # ---- any thread -------------------------------------------------------------------
    def submit(self, request, index):
        """Validate `request` (InputError/AdapterError now, not later) and queue it under `index`."""
        state = self.engine.new_state(index, request)
        with self._lock:
            self.pending.append(state)

    def cancel(self, index):
        """Drop request `index` (waiting or in a slot) at the next step; an unknown index is ignored."""
        with self._lock:
            self._cancelled.add(index)

    def queue_length(self):
        return len(self.pending)

    def waiting_for_slot(self):
        """Pending requests beyond the free slots: a burst that arrived between two steps is
        pending until the next step admits it, and the part that free slots will take does not wait."""
        return len(self.pending) - sum(st is None for st in self.slots)

    def busy_slots(self):
        return sum(st is not None for st in self.slots)

    def running(self):
        """Indices of the requests holding a slot."""
        return [st.index for st in self.slots if st is not None]

    def has_work(self):
        return bool(self.pending) or self.busy_slots() > 0

    # ---- the stepping thread ----------------------------------------------------------
    def step(self) -> List[Event]:
        """Apply cancellations, admit waiting requests into free slots, run one engine step;
        returns the events, in the order the tokens were produced."""
        self._apply_cancellations()
        self._admit()
        busy = self.busy_slots()
        produced = self.engine.step(self.slots) if busy else []
        plan = self.engine.stats["last"] if busy else None
        self.last_step = plan and (("mixed" if plan.decode_rows else "prefill") if plan.prefill_tokens
                                   else "decode")
        return [self._accept(s, token) for s, token in produced]

    def _apply_cancellations(self):
        with self._lock:
            cancelled, self._cancelled = self._cancelled, set()
            if cancelled:
                for st in [st for st in list(self.pending) + self.slots if st is not None and st.index in cancelled]:
                    self.engine.finish(st)
                self.pending = deque(st for st in self.pending if st.index not in cancelled)
                self.slots = [None if st is not None and st.index in cancelled else st for st in self.slots]

    def _admit(self):
        """Give every free slot the next waiting request (its prompt is written by the next steps)."""
        with self._lock:
            for s in [s for s, st in enumerate(self.slots) if st is None][:len(self.pending)]:
                if not self.engine.bind(self.pending[0]):
                    break  # its adapter waits for a device slot: first come, first served
                st = self.slots[s] = self.pending.popleft()
                st.admitted = self._admissions
                self._admissions += 1

    def _accept(self, s, token):
        """The stop rules (EOS, stop ids, max_new_tokens): a finished request frees its slot."""
        st = self.slots[s]
        reason = st.accept(token, self.engine.eos_ids)
        if reason:
            self.slots[s] = None
            self.engine.finish(st)
        return Event(st.index, token, reason)
