"""The one scheduler: waiting requests, decode slots, admission, steps, stop rules, cancellation.

Engine.stream/generate and the HTTP server both drive a Scheduler, so a request is admitted,
stepped and stopped by the same code whichever door it came in by.

Admission policy: an empty engine takes a waiting request into every slot at once (the
engine prefills all its slots in one call where that fits its prefill budget); otherwise a
step admits one waiting request into one free slot. A step is either that prefill or one
decode step of every occupied slot, so slots that are decoding wait for at most one prefill
between their tokens, and a cancellation takes effect at the next step.

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
        self.last_step = None                # what step() ran last: "prefill", "decode" or None

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

    def busy_slots(self):
        return sum(st is not None for st in self.slots)

    def running(self):
        """Indices of the requests holding a slot."""
        return [st.index for st in self.slots if st is not None]

    def has_work(self):
        return bool(self.pending) or self.busy_slots() > 0

    # ---- the stepping thread ----------------------------------------------------------
    def step(self) -> List[Event]:
        """Apply cancellations, then run one prefill (of newly admitted requests) or one decode
        step; returns the events, in the order the tokens were produced."""
        self._apply_cancellations()
        admitted = self._admit()
        self.last_step = "prefill" if admitted else "decode" if self.busy_slots() else None
        if admitted:
            produced = self.engine.prefill(admitted, self.slots)
        elif self.last_step:
            produced = self.engine.decode(self.slots)
        else:
            produced = []
        return [self._accept(s, token) for s, token in produced]

    def _apply_cancellations(self):
        with self._lock:
            cancelled, self._cancelled = self._cancelled, set()
            if cancelled:
                self.pending = deque(st for st in self.pending if st.index not in cancelled)
                self.slots = [None if st is not None and st.index in cancelled else st for st in self.slots]

    def _admit(self):
        """Slots given to waiting requests this step: every slot of an empty engine, else one."""
        with self._lock:
            free = [s for s, st in enumerate(self.slots) if st is None]
            take = free if len(free) == len(self.slots) else free[:1]
            take = take[:len(self.pending)]
            for s in take:
                self.slots[s] = self.pending.popleft()
        return take

    def _accept(self, s, token):
        """The stop rules (EOS, stop ids, max_new_tokens): a finished request frees its slot."""
        st = self.slots[s]
        reason = st.accept(token, self.engine.eos_ids)
        if reason:
            self.slots[s] = None
        return Event(st.index, token, reason)
