"""One engine step's inputs, packed from the slots (host side, numpy only).

Every step is a set of token rows of T = 1, each with its own cache row, position and adapter: the
next token of every decoding slot, plus prompt tokens of joining slots up to the step's token
budget (chunked prefill: a prompt is written over as many steps as its rows need, while the
decoding slots get a token at every one of them). While slots decode, a step's prompt rows are
also held to PROMPT_ROWS_PER_SLOT_ROW per decode row of the occupied slots (at least
PROMPT_ROWS_FLOOR), filled up to their bucket: every decoding request waits for the prompt rows of
a step, so under steady load steps keep one size and the inter-token latency stays flat instead of
alternating between decode-only steps and full-budget ones. The free slots' part of the budget
goes to prompts too: at low load a join then runs in large steps, which cost less a row. And while
more requests join than decode (a burst), prompts get the whole budget: the few answering requests
wait longer between tokens, the many waiting ones get their first sooner. Only the rows of
occupied slots run: a slot's amateur row exists only for a request that contrasts (an amateur and
beta != 0), so a greedy request costs one row on a contrastive engine too. The rows are padded to
a bucket (buckets(), each compiled once); padding rows write the scratch position of cache row 0,
which no real token ever attends to. Cache rows are addressed by slot (expert row s, amateur row
S + s; with a separate amateur model row s of its own cache), so packing moves no cache.
"""
from collections import deque
from dataclasses import dataclass
from typing import Dict, List

import numpy as np

from cold_ms.ops.contrastive import EXTRA
from cold_ms.pipeline.batching import choice_knobs, contrast_beta


# Counted on the occupied slots (decoding or joining), not on the decoding ones alone: a share that
# shrank while slots prefill would keep them prefilling. Two prompt rows per row is the pace of a
# 256-token prompt and 128 generated tokens (the serving benchmark's load): every slot decodes and
# the joining prompts keep up. The floor keeps prompt chunks large when few slots are occupied.
# At low load the free slots' part of the budget is larger (2 CoLD clients on 16 slots, in-process,
# budget 64: 82.5 -> 91.9 tokens/s, 4 clients 95.1 -> 102.5; a decoding request then waits for a
# budget-sized step while a prompt joins, as under vLLM's chunked prefill). A burst of 8 greedy
# requests on 8 slots with the whole budget while more join than decode (in-process, 64 requests,
# budget 64): TTFT p99 4,196 -> 3,180 ms, ITL p99 1.51 -> 1.46x its median.
PROMPT_ROWS_PER_SLOT_ROW = 2
PROMPT_ROWS_FLOOR = 16


def buckets(budget):
    """Row counts of the compiled steps: the powers of two below `budget` and, from 24 on, the
    halfway sizes 3 * 2^k (a step of 16 decode rows and its 32 prompt rows fills 48, not 64), then
    `budget`."""
    out, n = [], 1
    while n < budget:
        out.append(n)
        if n >= 16 and n * 3 // 2 < budget:
            out.append(n * 3 // 2)
        n *= 2
    return out + [budget]


def contrasts(state):
    """Whether the request needs its amateur row (beta 0 or no amateur is plain greedy)."""
    return state.request.amateur is not None and contrast_beta(state.request) != 0


@dataclass
class StepPlan:
    inputs: tuple                 # tokens, positions, cache_rows, pick, lora_idx, alpha, beta, extra
    key: tuple                    # ("step", rows, choices): the compiled graph it runs
    scored: List[int]             # slot of each real choice, in pick order
    advance: Dict[int, int]       # slot -> its next cache position after the step
    decode_rows: int              # rows of decoding slots
    prefill_tokens: int           # prompt tokens written


class Packer:
    """Plans steps for an engine of `slots` slots: `amateurs` says whether requests may contrast,
    `two_models` whether the amateur rows run a separate model (rows = two halves), `budget` the
    most rows (halves' rows with two models) a step may hold, `scratch` the padding position."""

    def __init__(self, slots, amateurs, two_models, budget, scratch):
        self.slots, self.amateurs, self.two_models = slots, amateurs, two_models
        self.budget, self.scratch = budget, scratch
        self.sizes = buckets(budget)

    def choices(self, rows):
        """K, the choices a bucket of `rows` scores: at most one per slot; a contrastive bucket of
        one model gives each choice two rows, but one lone greedy request still fits one row."""
        if self.amateurs and not self.two_models:
            return min(max(1, rows // 2), self.slots)
        return min(rows, self.slots)

    def plan(self, slots):
        """The StepPlan of one step over `slots` (SlotState or None), or None when all are empty."""
        experts, amateurs, scored, advance = [], [], [], {}
        live = [s for s, st in enumerate(slots) if st is not None]
        decoding = [s for s in live if slots[s].pos >= len(slots[s].request.prompt_ids)]
        joining = sorted(set(live) - set(decoding), key=lambda s: slots[s].admitted)
        for s in decoding:
            st = slots[s]
            scored.append(self._add_rows(s, st, [(st.tokens[-1], st.pos)], experts, amateurs))
            advance[s] = st.pos + 1
        decode_rows, prefill = self._used(experts, amateurs), 0
        slot_rows = sum(1 + (contrasts(slots[s]) and not self.two_models) for s in live)
        limit = self._limit(decode_rows, slot_rows, len(live), burst=len(joining) > len(decoding))
        for s in joining:
            st = slots[s]
            prompt, per_token = st.request.prompt_ids, 1 + (contrasts(st) and not self.two_models)
            take = min(len(prompt) - st.pos, (limit - self._used(experts, amateurs)) // per_token)
            if take <= 0:
                continue
            end = st.pos + take
            choice = self._add_rows(s, st, [(prompt[p], p) for p in range(st.pos, end)], experts, amateurs)
            if end == len(prompt):  # its last prompt token is in: the first generated token comes out
                scored.append(choice)
            advance[s], prefill = end, prefill + take
        if not experts:
            return None
        rows = next(n for n in self.sizes
                    if n >= self._used(experts, amateurs) and self.choices(n) >= len(scored))
        inputs = self._arrays(rows, experts, amateurs, scored, slots)
        key = ("step", rows, self.choices(rows))
        return StepPlan(inputs, key, [c[0] for c in scored], advance, decode_rows, prefill)

    def keys_for(self, states):
        """The graph keys a run of `states` (fresh SlotStates, in submission order) steps through,
        in first-use order, were every request to run to its max_new_tokens with free slots taken
        first come, first served (the Scheduler's rules). An earlier stop only leaves rows out: a
        smaller bucket then compiles when first met."""
        waiting, slots, keys, admitted = deque(states), [None] * self.slots, [], 0
        while waiting or any(slots):
            for s in range(self.slots):
                if slots[s] is None and waiting:
                    slots[s], admitted = waiting.popleft(), admitted + 1
                    slots[s].admitted = admitted
            plan = self.plan(slots)
            keys += [plan.key] if plan.key not in keys else []
            for s, pos in plan.advance.items():
                slots[s].pos = pos
            for s in plan.scored:
                slots[s].tokens.append(0)
                if len(slots[s].tokens) >= slots[s].request.max_new_tokens:
                    slots[s] = None
        return keys

    def _limit(self, decode_rows, slot_rows, occupied, burst):
        """The rows a step may hold: the whole budget when no slot decodes or in a `burst` (more
        requests join than decode), else the decode rows and the larger of the prompt-row share of
        the `occupied` slots' `slot_rows` and the free slots' part of the budget, up to the bucket
        that holds them."""
        if not decode_rows or burst:
            return self.budget
        free = self.budget * (self.slots - occupied) // self.slots
        want = decode_rows + max(PROMPT_ROWS_FLOOR, PROMPT_ROWS_PER_SLOT_ROW * slot_rows, free)
        return next(n for n in self.sizes if n >= min(want, self.budget))

    def _used(self, experts, amateurs):
        return len(experts) if self.two_models else len(experts) + len(amateurs)

    def _add_rows(self, s, st, tokens, experts, amateurs):
        """Rows of `tokens` [(token, position)] for slot s; (slot, last expert row, last amateur row
        or None)."""
        amateur_row = self.slots + s if not self.two_models else s
        experts += [(t, p, s, st.expert) for t, p in tokens]
        if not contrasts(st):
            return s, len(experts) - 1, None
        amateurs += [(t, p, amateur_row, st.amateur) for t, p in tokens]
        return s, len(experts) - 1, len(amateurs) - 1

    def _arrays(self, rows, experts, amateurs, scored, slots):
        """The step's input arrays for a bucket of `rows` rows."""
        pad = (0, self.scratch, 0, -1)
        if self.two_models:  # two halves of `rows` rows each; amateur picks count from the second half
            table = experts + [pad] * (rows - len(experts)) + amateurs + [pad] * (rows - len(amateurs))
            a_base = 0
        else:
            table = experts + amateurs + [pad] * (rows - len(experts) - len(amateurs))
            a_base = len(experts)
        table = np.array(table, np.int64)
        k = self.choices(rows)
        e_pick = np.zeros((k,), np.int32)
        a_pick = np.zeros((k,), np.int32)
        alpha, beta = np.ones((k,), np.float32), np.zeros((k,), np.float32)
        extra = np.zeros((k, len(EXTRA)), np.float32)
        for j, (s, e, a) in enumerate(scored):
            st = slots[s]
            # a greedy choice pairs its expert token with itself (one model) at beta 0: s = s_e exactly
            e_pick[j] = e
            a_pick[j] = a_base + a if a is not None else (0 if self.two_models else e)
            alpha[j], extra[j] = st.request.alpha, choice_knobs(st)
            beta[j] = contrast_beta(st.request) if a is not None else 0.0
        pick = np.concatenate([e_pick, a_pick]) if self.amateurs else e_pick
        tokens, positions, cache_rows, lora_idx = (np.ascontiguousarray(table[:, i], np.int32) for i in range(4))
        return (tokens.reshape(-1, 1), positions.reshape(-1, 1), cache_rows, pick, lora_idx, alpha, beta, extra)
