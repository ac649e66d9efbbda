"""The generation engine: slots, prompt chunks and the compiled steps.

Host code in numpy prepares static-shape inputs; the compiled ColdStep does the
forward and the scoring and returns token ids. generate/stream hand the requests to a
Scheduler (admission, stop rules), the same one the HTTP server drives: requests take free
slots as they open (continuous batching), so a batch larger than the slot count still runs
to completion.
"""
import time
from dataclasses import dataclass
from typing import List

import numpy as np
from mindspore import Tensor

from cold_ms.cells.cold_step import ColdStep, TwoModelStep, one_shape
from cold_ms.cells.transformer import assign, build_lm
from cold_ms.config import LoraLayout
from cold_ms import adapter_defaults
from cold_ms.config import ChoiceParams, ColdParams
from cold_ms.ops.contrastive import EXTRA
from cold_ms.errors import ConfigError, InputError
from cold_ms.ops.registry import explain_kernel_error
from cold_ms.pipeline import batching
from cold_ms.pipeline.scheduler import Scheduler
from cold_ms.formats.adapters import AdapterRegistry
from cold_ms.runtime import configure, stop_compile_cache, use_compile_cache

DEFAULT_CHUNKS = (16, 64, 256)
# Token rows one all-slot prefill call may hold. Written with MindSpore ops (the gather
# backend) a call's graph keeps every activation (about 2.5 MB per token row for
# SmolLM2-135M: 16 rows x 256 tokens needed over 10 GB; the layer kernels keep about
# 0.1 MB); past this budget the slots are prefilled one at a time.
PREFILL_TOKEN_BUDGET = 1024


@dataclass
class Result:
    prompt_ids: List[int]
    token_ids: List[int]
    finish_reason: str


AMATEUR_MODEL = "model"  # Request.amateur naming the engine's separate amateur model


def amateur_lm(engine, model, weights, activations, dtype):
    """(CausalLM, prepared weights) of the separate amateur model: one row per slot, no adapters;
    its vocabulary must be the expert's (the scores are compared token by token)."""
    expert = engine.model
    if model.config.vocab_size != expert.config.vocab_size:
        raise ConfigError(f"the amateur model has {model.config.vocab_size} tokens, the expert "
                          f"{expert.config.vocab_size}: they must share one tokenizer")
    if model.tokenizer is not None and expert.tokenizer is not None:
        sample = "Contrastive decoding compares 12 tokens, é and 🚀."
        if model.tokenizer.encode(sample) != expert.tokenizer.encode(sample):
            raise ConfigError("the amateur model's tokenizer encodes text unlike the expert's: they must share one")
    if engine.max_len > model.config.max_position_embeddings:
        raise ConfigError(f"max_len {engine.max_len} exceeds the amateur model's context "
                          f"{model.config.max_position_embeddings}")
    return build_lm(model.weights, model.config, LoraLayout(0, 0, ()), engine.slots, engine.max_len,
                    engine.lora_backend, weights, activations, dtype)


class Engine:
    """weights: the type the engine reads the checkpoint's matrices in (auto, native, float32,
    bfloat16, float16, q8_0) and activations: int16, int8 or float32 for its quantised GEMVs (see
    cold_ms/ops/prepare.py); dtype: the compute dtype of the MindSpore Cells path. The engine
    prepares its own weights; the loaded model is never changed."""

    def __init__(self, model, adapters=None, *, slots=1, max_len=None, contrastive=True,
                 mode="graph", lora_backend="custom", mask="logit",
                 chunk_sizes=DEFAULT_CHUNKS, compile_cache=True, weights="auto", activations="int16",
                 dtype="float32", amateur_model=None):
        configure(mode)
        cfg = model.config
        self.model, self.mode, self.slots = model, mode, int(slots)
        self.max_len = int(max_len or min(cfg.max_position_embeddings, 2048))
        if self.slots < 1:
            raise ConfigError(f"slots must be >= 1, got {slots}")
        if not 1 <= self.max_len <= cfg.max_position_embeddings:
            raise ConfigError(f"max_len {self.max_len} is outside the model's context "
                              f"(1..{cfg.max_position_embeddings})")
        ColdParams(mask=mask)
        self.adapters = adapters or AdapterRegistry()
        self.contrastive = bool(contrastive)
        self.chunk_sizes = tuple(chunk_sizes)
        self.eos_ids = set(cfg.eos_token_ids) | set(getattr(model.tokenizer, "eos_ids", ()) or ())
        self.rows = rows = 2 * self.slots if self.contrastive else self.slots
        self.amateur_model = amateur_model
        layout = self.adapters.layout()
        # with a separate amateur model the expert's model holds the expert rows only
        self.lm, self.prepared = build_lm(model.weights, cfg, layout, self.slots if amateur_model else rows,
                                          self.max_len, lora_backend, weights, activations, dtype)
        self.lora_backend, self.weights = self.lm.backend, self.lm.weights_summary
        assign(self.lm, self.adapters.stacked(cfg))
        key = (cfg, layout, rows, self.max_len, mode, self.lora_backend, mask, self.contrastive, dtype,
               self.lm.weights_key)
        make_step = lambda: ColdStep(self.lm, mask)  # noqa: E731
        if amateur_model is not None:
            self.amateur_lm, self.amateur_prepared = amateur_lm(self, amateur_model, weights, activations, dtype)
            key += (amateur_model.config, self.amateur_lm.weights_key)
            make_step = lambda: TwoModelStep(self.lm, self.amateur_lm, self.slots, mask)  # noqa: E731
        # the Parameters hold what they read; mapped file pages come back if read again
        for m in (model, amateur_model, self.adapters):
            if m is not None:
                m.release_pages()
        # warmup() compiles through the compile cache, under this key plus its graph list
        self.cache_key = compile_cache and key
        self.step = make_step()
        # Decode steps have one shape for the engine's life: their own step Cell (same lm,
        # same Parameters) runs them without the per-call compile check.
        self.decode_step = one_shape(make_step(), mode)
        self.stats = {"compile_s": {}, "decode_ms": [], "prefill_s": 0.0}

    # ---- validation -------------------------------------------------------------------
    def new_state(self, index, req):
        """A validated SlotState for request `req` (InputError/AdapterError on bad input)."""
        where = f"request {index}"
        req = adapter_defaults.complete(req, self.adapters)
        ids = list(req.prompt_ids)
        if not ids:
            raise InputError(f"{where}: empty prompt")
        vocab = self.model.config.vocab_size
        if min(ids) < 0 or max(ids) >= vocab:
            raise InputError(f"{where}: prompt token ids must be in [0, {vocab})")
        ColdParams(req.alpha, req.beta)
        ChoiceParams(req.beta_schedule, req.temperature, req.top_p, req.seed)
        if int(req.max_new_tokens) < 1:
            raise InputError(f"{where}: max_new_tokens must be >= 1")
        if len(ids) + req.max_new_tokens > self.max_len:
            raise InputError(f"{where}: prompt ({len(ids)} tokens) + max_new_tokens "
                             f"({req.max_new_tokens}) exceeds the context of {self.max_len} tokens")
        if req.amateur is not None and not self.contrastive:
            raise InputError(f"{where}: this engine runs without amateur rows; "
                             f"set amateur=None or build it with contrastive=True")
        if (req.amateur == AMATEUR_MODEL) != (self.amateur_model is not None and req.amateur is not None):
            raise InputError(f"{where}: amateur {req.amateur!r}: " + (
                f"this engine's amateur rows run its separate amateur model: amateur='{AMATEUR_MODEL}' or None"
                if self.amateur_model is not None else "this engine has no separate amateur model"))
        amateur = self.adapters.slot(req.amateur) if req.amateur not in (None, AMATEUR_MODEL) else -1
        return batching.SlotState(index, req, self.adapters.slot(req.adapter), amateur)

    # ---- compiled calls ---------------------------------------------------------------
    def _call(self, key, tokens, positions, cache_rows, last, lora_idx, alpha, beta, extra):
        configure(self.mode)
        args = [Tensor(tokens), Tensor(positions),
                None if cache_rows is None else Tensor(np.asarray(cache_rows, np.int32)),
                Tensor(last), Tensor(lora_idx), Tensor(alpha), Tensor(beta), Tensor(extra)]
        start = time.perf_counter()
        try:
            ids = (self.decode_step if key[0] == "decode" else self.step)(*args).asnumpy()
        except RuntimeError as e:
            raise explain_kernel_error(e) or e
        elapsed = time.perf_counter() - start
        if key not in self.stats["compile_s"]:
            self.stats["compile_s"][key] = elapsed  # the first call of a shape compiles it
        return ids, elapsed

    def _prefill_group(self, slot_ids, slots):
        """Prefill the given slots (all slots in order, or one); {slot: first token}."""
        states = [slots[s] for s in slot_ids]
        everyone = len(slot_ids) == self.slots
        rows = None if everyone else batching.slot_rows(slot_ids, self.slots, self.contrastive)
        prompts = [st.request.prompt_ids for st in states]
        row_prompts = prompts * 2 if self.contrastive else prompts
        lora_idx, alpha, beta, extra = batching.slot_params(states, self.contrastive)
        first = {}
        for start, size in batching.chunk_plan(max(len(p) for p in prompts), self.chunk_sizes):
            tokens, positions, last = batching.prefill_chunk(row_prompts, start, size, self.max_len)
            key = ("prefill", len(row_prompts), size)
            ids, _ = self._call(key, tokens, positions, rows, last, lora_idx, alpha, beta, extra)
            for j, st in enumerate(states):
                if start < len(prompts[j]) <= start + size:  # its last prompt token is in this chunk
                    first[slot_ids[j]] = int(ids[j])
        return first

    # ---- step-wise API (the Scheduler drives these) -----------------------------------
    def prefill(self, slot_ids, slots):
        """Write the prompts of slots[s] for s in slot_ids into the cache: all slots at once
        when every slot is listed and the call fits PREFILL_TOKEN_BUDGET, else one slot at a
        time (the others' rows untouched).
        Returns [(slot, first generated token)]."""
        start = time.perf_counter()
        longest = max(len(slots[s].request.prompt_ids) for s in slot_ids)
        together = len(slot_ids) == self.slots and self._fits_together(longest)
        groups = [list(slot_ids)] if together else [[s] for s in slot_ids]
        out = []
        for group in groups:
            for s, token in self._prefill_group(group, slots).items():
                slots[s].pos = len(slots[s].request.prompt_ids)
                out.append((s, token))
        self.stats["prefill_s"] += time.perf_counter() - start
        return out

    def _fits_together(self, longest):
        """Whether an all-slot prefill of prompts up to `longest` tokens fits the budget."""
        largest = max(size for _, size in batching.chunk_plan(longest, self.chunk_sizes))
        return self.rows * largest <= PREFILL_TOKEN_BUDGET

    def decode(self, slots):
        """One decode step of every occupied slot; [(slot, next token)]."""
        tokens, positions, lora_idx, alpha, beta, extra = batching.decode_inputs(
            slots, self.slots, self.contrastive, self.max_len)
        last = np.zeros((tokens.shape[0],), np.int32)
        ids, elapsed = self._call(("decode", tokens.shape[0], 1), tokens, positions, None, last,
                                  lora_idx, alpha, beta, extra)
        self.stats["decode_ms"].append(elapsed * 1e3)
        out = []
        for s, st in enumerate(slots):
            if st is not None:
                st.pos += 1
                out.append((s, int(ids[s])))
        return out

    def warmup(self, longest_prompt=None, per_slot=False):
        """Compile now rather than on the first request; returns seconds.

        longest_prompt: compile the prefill graphs prefill() uses for a prompt of that
        length (all slots at once, or one slot's if over PREFILL_TOKEN_BUDGET); per_slot:
        compile every prefill graph a long-lived Scheduler (a server) may call for any prompt:
        one slot's graphs of every chunk size, and the all-slot graphs within the budget
        (an empty engine admits into every slot at once).
        The dummy steps write only to the scratch position, so no cache row is disturbed.
        """
        start = time.perf_counter()
        rows = self.rows
        shapes = [(("decode", rows, 1), rows, 1, None)]
        one = batching.slot_rows([0], self.slots, self.contrastive)
        if longest_prompt:
            if self._fits_together(longest_prompt):
                sizes = {size for _, size in batching.chunk_plan(longest_prompt, self.chunk_sizes)}
                shapes += [(("prefill", rows, size), rows, size, None) for size in sorted(sizes)]
            else:  # prefill() will take the slots one at a time
                per_slot = True
        if per_slot:  # one slot's rows; with a single slot these are all the rows, read in place
            cache_rows = one if self.slots > 1 else None
            shapes += [(("prefill", len(one), size), len(one), size, cache_rows) for size in self.chunk_sizes]
            shapes += [(("prefill", rows, size), rows, size, None) for size in self.chunk_sizes
                       if rows * size <= PREFILL_TOKEN_BUDGET]
        # each graph once, in the order listed
        shapes = list({s[0]: s for s in shapes if s[0] not in self.stats["compile_s"]}.values())
        # MindSpore's cache matches graphs by compile order only: a fixed list, in a fixed
        # order, is what makes file n the same graph in every process (see runtime.py)
        cached = self.cache_key and shapes and use_compile_cache((self.cache_key, shapes))
        try:
            for key, n, seq, cache_rows in shapes:
                slots = max(1, n // 2) if self.contrastive else n
                self._call(key, np.zeros((n, seq), np.int32), np.full((n, seq), self.max_len, np.int32),
                           cache_rows, np.zeros((n,), np.int32), np.full((n,), -1, np.int32),
                           np.ones((slots,), np.float32), np.zeros((slots,), np.float32),
                           np.zeros((slots, len(EXTRA)), np.float32))
        finally:
            if cached:
                stop_compile_cache()
        return time.perf_counter() - start

    # ---- public API -------------------------------------------------------------------
    def stream(self, requests):
        """Yield an Event per generated token, in the order tokens are produced (every request
        is validated before the first step)."""
        scheduler = Scheduler(self)
        for i, r in enumerate(requests):
            scheduler.submit(r, i)
        while scheduler.has_work():
            yield from scheduler.step()

    def generate(self, requests):
        """Run every request to completion; results in request order."""
        results = [Result(list(r.prompt_ids), [], "") for r in requests]
        for ev in self.stream(requests):
            results[ev.index].token_ids.append(ev.token_id)
            if ev.finish_reason:
                results[ev.index].finish_reason = ev.finish_reason
        return results
