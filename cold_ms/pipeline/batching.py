"""Requests, their slot state and stop rules, and host-side pieces of the compiled steps' inputs
(numpy only, never in the graph). How a step's rows are packed: cold_ms/pipeline/packing.py.

Padding tokens go to the cache's scratch position, which no real token ever attends to, so
rows of different lengths share one static shape.
"""
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from cold_ms.ops.contrastive import SCHEDULES


@dataclass
class Request:
    """One generation request. adapter: expert adapter name (None = base model);
    amateur: 'base', an adapter name, 'model' (the engine's separate amateur model), or None
    for plain greedy on the expert. beta_schedule, temperature, top_p, seed: see
    cold_ms.config.ChoiceParams (the defaults: argmax). alpha, beta and beta_schedule left None
    are the expert adapter's own (cold_ms.adapter_defaults), filled in by the engine. ignore_eos,
    min_tokens: vLLM's: EOS never stops the request / does not stop it before min_tokens generated
    tokens."""
    prompt_ids: List[int]
    adapter: Optional[str] = None
    amateur: Optional[str] = "base"
    alpha: Optional[float] = None
    beta: Optional[float] = None
    max_new_tokens: int = 64
    ignore_eos: bool = False
    min_tokens: int = 0
    stop_token_ids: Tuple[int, ...] = ()
    beta_schedule: Optional[str] = None
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0


@dataclass
class SlotState:
    index: int                 # position of the request in the caller's list
    request: Request
    expert: int                # adapter slot of the expert row, -1 = base
    amateur: int               # adapter slot of the amateur row, -1 = base
    pos: int = 0               # next cache position to write (below the prompt's length: prefilling)
    admitted: int = 0          # admission order: joining slots prefill first come, first served
    bound: bool = False        # holds its adapters' device slots (from admission to its end)
    tokens: List[int] = field(default_factory=list)
    finish_reason: Optional[str] = None

    def accept(self, token, eos_ids):
        """Record a generated token; return the finish reason once the request is done.

        The min_tokens rule (vLLM's semantics, without masking the scores): an EOS or stop id
        among the first min_tokens generated tokens is kept as an ordinary token, not a stop."""
        self.tokens.append(int(token))
        req = self.request
        stops = token in req.stop_token_ids or (not req.ignore_eos and token in eos_ids)
        if stops and len(self.tokens) > req.min_tokens:
            self.finish_reason = "stop"
        elif len(self.tokens) >= req.max_new_tokens:
            self.finish_reason = "length"
        return self.finish_reason


DEFAULT_CHUNKS = (16, 64, 256)  # prompt chunk sizes of the unfused baselines (cold_ms/bench/e2e_variants.py)


def chunk_plan(longest, chunk_sizes):
    """[(start, size)]: prefill calls covering `longest` prompt tokens, largest first.

    Each call costs its size in tokens (padding included) plus the smallest size for its
    fixed overhead; the cheapest cover wins. An 80-token prompt with sizes (16, 64, 256)
    runs as 64 + 16 rather than one call padded to 256: a quarter of the work (and on the
    gather backend no 256-token graph, whose kernels MindSpore's CPU runtime keeps memory
    for through the process's life).
    """
    sizes = sorted(set(chunk_sizes))
    call = sizes[0]
    cost, last = [0], [0]  # cheapest cover of n tokens, and the size of its last call
    for n in range(1, longest + 1):
        c, size = min((cost[max(n - s, 0)] + s + call, s) for s in sizes)
        cost.append(c)
        last.append(size)
    picked, n = [], longest
    while n > 0:
        picked.append(last[n])
        n -= last[n]
    plan, start = [], 0
    for size in sorted(picked, reverse=True):
        plan.append((start, size))
        start += size
    return plan


def prefill_chunk(prompts, start, size, scratch):
    """tokens, positions (R, T) and last (R,) for prompt tokens [start, start + size) of every row."""
    rows = len(prompts)
    tokens = np.zeros((rows, size), np.int32)
    positions = np.full((rows, size), scratch, np.int32)
    last = np.zeros((rows,), np.int32)
    for r, prompt in enumerate(prompts):
        span = prompt[start:start + size]
        tokens[r, :len(span)] = span
        positions[r, :len(span)] = np.arange(start, start + len(span))
        last[r] = max(len(span) - 1, 0)
    return tokens, positions, last


def contrast_beta(request):
    """beta as applied: a request without an amateur is plain greedy (beta 0)."""
    return request.beta if request.amateur is not None else 0.0


def uniform(seed, step):
    """The draw of a request's step-th token: a number in [0, 1) fixed by (seed, step) alone,
    so a request draws the same tokens alone or in any batch."""
    return np.random.default_rng([seed, step]).random(dtype=np.float32)


def choice_knobs(state):
    """The request's row of the next-token choice's `extra` (cold_ms/ops/contrastive.py: EXTRA)."""
    req = state.request
    return (SCHEDULES[req.beta_schedule], req.temperature, req.top_p,
            uniform(req.seed, len(state.tokens)) if req.temperature > 0 else 0.0)
