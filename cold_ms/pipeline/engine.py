"""The generation engine: slots, steps under a token budget and the compiled steps.

Host code in numpy packs each step's token rows (cold_ms/pipeline/packing.py: the decoding slots'
next tokens plus prompt chunks of joining slots, only the rows occupied slots need, padded to a
row-count bucket); the compiled ColdStep of that bucket does the forward and the scoring and
returns token ids. generate/stream hand the requests to a Scheduler (admission, stop rules), the
same one the HTTP server drives: requests take free slots as they open (continuous batching), so a
batch larger than the slot count still runs to completion.
"""
import contextlib
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
from cold_ms.pipeline.packing import Packer
from cold_ms.pipeline.scheduler import Scheduler
from cold_ms.formats.adapters import AdapterRegistry
from cold_ms.runtime import compiling, configure, stop_compile_cache, use_compile_cache

# Token rows one step may hold (decode rows included): a prompt joining running requests is
# written in chunks of what the decode rows leave, so they wait at most one such step per token.
# Larger steps cost less a row, up to where a step's activations leave the L2 cache: in-process
# (SmolLM2-135M Q4_1, kernels on 2 AMD EPYC cores) a 64-row step took 1.43 ms a row, 96 rows 1.21,
# 128 rows 1.16 and 256 rows 1.6. Against 64, 128 took 8 CoLD clients on 8 slots from 111.8 to
# 116.0 tokens/s and 2 on 16 slots from 91.9 to 99.6, and a burst of 8 greedy prompts' TTFT p99
# from 3,180 to 2,938 ms, with the ITL p99 at 1.1-1.6x its median (steps under load keep their
# size: packing.py). Written with MindSpore ops (the gather backend) a step's graph keeps every
# activation and each row's cache copy (about 2.5 MB per row for SmolLM2-135M at max_len 2048; the
# layer kernels keep about 0.1 MB).
DEFAULT_STEP_TOKENS = 128


@dataclass
class Result:
    prompt_ids: List[int]
    token_ids: List[int]
    finish_reason: str


AMATEUR_MODEL = "model"  # Request.amateur naming the engine's separate amateur model


def amateur_lm(engine, model, weights, activations, dtype, kv_dtype):
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
                    engine.lora_backend, weights, activations, dtype, kv_dtype)


class Engine:
    """weights: the type the engine reads the checkpoint's matrices in (auto, native, float32,
    bfloat16, float16, q8_0) and activations: int16, int8 or float32 for its quantised GEMVs (see
    cold_ms/ops/prepare.py); dtype: the compute dtype of the MindSpore Cells path; kv_dtype: what the
    KV caches hold (float32, or float16/bfloat16 on the CPU layer kernels: k and v rounded to nearest
    even, read back as float32). The engine prepares its own weights; the loaded model is never changed."""

    def __init__(self, model, adapters=None, *, slots=1, max_len=None, contrastive=True,
                 mode="graph", lora_backend="custom", mask="logit",
                 max_step_tokens=None, compile_cache=True, weights="auto", activations="int16",
                 dtype="float32", amateur_model=None, kv_dtype="float32"):
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
        self.eos_ids = set(cfg.eos_token_ids) | set(getattr(model.tokenizer, "eos_ids", ()) or ())
        rows = 2 * self.slots if self.contrastive else self.slots  # cache rows: expert s, amateur S + s
        self.amateur_model = amateur_model
        layout = self.adapters.layout()
        # with a separate amateur model the expert's model holds the expert rows only
        self.lm, self.prepared = build_lm(model.weights, cfg, layout, self.slots if amateur_model else rows,
                                          self.max_len, lora_backend, weights, activations, dtype, kv_dtype)
        self.lora_backend, self.weights, self.kv_dtype = self.lm.backend, self.lm.weights_summary, kv_dtype
        assign(self.lm, self.adapters.stacked(cfg))
        self.adapters.write = lambda arrays: assign(self.lm, arrays)  # adapters loaded at runtime
        key = (cfg, layout, rows, self.max_len, mode, self.lora_backend, mask, self.contrastive, dtype,
               self.lm.weights_key, kv_dtype)
        make_step = lambda: ColdStep(self.lm, mask)  # noqa: E731
        if amateur_model is not None:
            self.amateur_lm, self.amateur_prepared = amateur_lm(self, amateur_model, weights, activations, dtype,
                                                                      kv_dtype)
            key += (amateur_model.config, self.amateur_lm.weights_key)
            make_step = lambda: TwoModelStep(self.lm, self.amateur_lm, mask)  # noqa: E731
        # the Parameters hold what they read; mapped file pages come back if read again
        for m in (model, amateur_model, self.adapters):
            if m is not None:
                m.release_pages()
        self.packer = Packer(self.slots, self.contrastive, amateur_model is not None,
                             self._step_budget(max_step_tokens), self.max_len)
        self.max_step_tokens = self.packer.budget
        # warmup() compiles through the compile cache, under this key plus its graph list
        self.cache_key = compile_cache and key + (self.max_step_tokens,)
        # One step Cell per row bucket (same lm, same Parameters): each sees a single input
        # shape, so it runs its graph without the per-call compile check (one_shape).
        self._make_step, self._steps = make_step, {}
        self.stats = {"compile_s": {}, "decode_ms": [], "prefill_s": 0.0, "last": None}

    def _step_budget(self, asked):
        """Rows per step: every decoding slot's rows must fit one step."""
        needed = 2 * self.slots if self.contrastive and self.amateur_model is None else self.slots
        budget = int(asked) if asked is not None else max(DEFAULT_STEP_TOKENS, needed)
        if budget < needed:
            raise ConfigError(f"max_step_tokens {budget} cannot hold a decode step of {self.slots} slots "
                              f"({needed} rows): give at least {needed}")
        return budget

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
        if not 0 <= int(req.min_tokens) <= req.max_new_tokens:
            raise InputError(f"{where}: min_tokens must be in [0, max_new_tokens={req.max_new_tokens}], "
                             f"got {req.min_tokens}")
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
        pinned = []
        try:  # unknown names are refused here; the adapters stay pinned until the request ends
            for name in (req.adapter, self._amateur_adapter(req)):
                self.adapters.pin(name)
                pinned.append(name)
            named = set(pinned) - {None, "base"}
            if len(named) > self.adapters.layout().num_slots:  # it could never be admitted
                raise InputError(f"{where}: adapters {sorted(named)} need {len(named)} adapter slots; this "
                                 f"engine has {self.adapters.layout().num_slots}")
        except Exception:
            for name in pinned:
                self.adapters.unpin(name)
            raise
        return batching.SlotState(index, req, -1, -1)

    @staticmethod
    def _amateur_adapter(req):
        return None if req.amateur == AMATEUR_MODEL else req.amateur

    # ---- a request's adapter slots (the Scheduler calls these) ----------------------------
    def bind(self, state):
        """Give an admitted request the device slots of its adapters; False if one has none free
        (every slot serves running requests: it waits)."""
        req = state.request
        expert = self.adapters.acquire(req.adapter)
        if expert is None:
            return False
        amateur = self.adapters.acquire(self._amateur_adapter(req))
        if amateur is None:
            self.adapters.deactivate(req.adapter)
            return False
        state.expert, state.amateur, state.bound = expert, amateur, True
        return True

    def finish(self, state):
        """A request ended (finished, cancelled, waiting or running): its adapters are free again."""
        for name in (state.request.adapter, self._amateur_adapter(state.request)):
            if state.bound:
                self.adapters.deactivate(name)
            self.adapters.unpin(name)

    # ---- compiled calls ---------------------------------------------------------------
    def _call(self, key, inputs):
        """Run the step Cell of bucket key = ("step", rows, choices) on the numpy `inputs`."""
        configure(self.mode)
        if key not in self._steps:
            self._steps[key] = one_shape(self._make_step(), self.mode)
        first = key not in self.stats["compile_s"]  # the first call of a shape compiles it
        start = time.perf_counter()
        try:
            with compiling() if first else contextlib.nullcontext():
                ids = self._steps[key](*(Tensor(a) for a in inputs)).asnumpy()
        except RuntimeError as e:
            raise explain_kernel_error(e) or e
        elapsed = time.perf_counter() - start
        if first:
            self.stats["compile_s"][key] = elapsed
        return ids, elapsed

    # ---- step-wise API (the Scheduler drives this) ------------------------------------
    def step(self, slots):
        """One step over `slots` (SlotState or None): the next token of every decoding slot and the
        prompt tokens of joining ones the budget leaves (cold_ms/pipeline/packing.py).
        Returns [(slot, token)] for the decoding slots and the joining ones whose prompt is in."""
        plan = self.packer.plan(slots)
        if plan is None:
            return []
        ids, elapsed = self._call(plan.key, plan.inputs)
        self.stats["last"] = plan
        if plan.prefill_tokens:
            self.stats["prefill_s"] += elapsed
        else:
            self.stats["decode_ms"].append(elapsed * 1e3)
        for s, pos in plan.advance.items():
            slots[s].pos = pos
        return [(s, int(ids[j])) for j, s in enumerate(plan.scored)]

    def graphs(self):
        """The keys of every step graph: one per row bucket."""
        return [("step", n, self.packer.choices(n)) for n in self.packer.sizes]

    def graphs_for(self, requests):
        """The keys of the step graphs `requests` run (packing.Packer.keys_for): a few prompts
        need a few of the buckets (the default demo 3 of 9)."""
        states = [batching.SlotState(i, adapter_defaults.complete(r, self.adapters), 0, 0)
                  for i, r in enumerate(requests)]
        return self.packer.keys_for(states)

    def warmup(self, keys=None):
        """Compile the step graphs of `keys` (default: every one) now rather than at the first
        request; returns seconds. The dummy steps write only to the scratch position, so no cache
        row is disturbed."""
        start = time.perf_counter()
        shapes = [key for key in keys or self.graphs() if key not in self.stats["compile_s"]]
        # MindSpore's cache matches graphs by compile order only: a fixed list, in a fixed
        # order, is what makes file n the same graph in every process (see runtime.py)
        cached = self.cache_key and shapes and use_compile_cache((self.cache_key, shapes))
        try:
            for key in shapes:
                self._call(key, self._dummy_inputs(key))
        finally:
            if cached:
                stop_compile_cache()
        return time.perf_counter() - start

    def _dummy_inputs(self, key):
        """Inputs of a step graph whose rows all pad (token 0 at the scratch position)."""
        _, n, k = key
        rows = 2 * n if self.amateur_model is not None else n
        picks = 2 * k if self.contrastive else k
        return (np.zeros((rows, 1), np.int32), np.full((rows, 1), self.max_len, np.int32),
                np.zeros((rows,), np.int32), np.zeros((picks,), np.int32), np.full((rows,), -1, np.int32),
                np.ones((k,), np.float32), np.zeros((k,), np.float32), np.zeros((k, len(EXTRA)), np.float32))

    # ---- public API -------------------------------------------------------------------
    def stream(self, requests):
        """Yield an Event per generated token, in the order tokens are produced (every request
        is validated before the first step)."""
        scheduler = Scheduler(self)
        try:
            for i, r in enumerate(requests):
                scheduler.submit(r, i)
        except Exception:
            for st in scheduler.pending:  # none of them runs: their adapters are free again
                self.finish(st)
            raise
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
