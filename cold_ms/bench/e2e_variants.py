"""The decoding variants `bench.py e2e` compares, each behind the same two calls:
prefill(batch) -> seconds to the first token, and step() -> seconds of one decode step.

- greedy:          the expert alone (base + LoRA), B rows, one compiled step.
- cold:            the fused expert+amateur graph, 2B rows, scoring inside, ids out.
- cold_two_pass:   the same weights (shared Parameters); expert rows, amateur rows and
                   the scoring as three graph calls per step.
- cold_two_models: two model copies sharing no weight (the adapter merged into the first)
                   and contrastive scoring in numpy on the host: the naive CD a user
                   writes first.
- cold_model:      the fused step against a separate amateur model (e2e --amateur-model):
                   the expert's and the amateur's models side by side in one graph.
"""
import time

import numpy as np
from mindspore import Tensor

from cold_ms import wtypes
from cold_ms.cells.cold_step import LogitsStep, ScoreStep, one_shape
from cold_ms.cells.transformer import CausalLM, assign, build_lm
from cold_ms.config import LoraLayout
from cold_ms.formats.names import module_path
from cold_ms.ops.prepare import EMBED, HEAD, Prepared
from cold_ms.pipeline import batching
from cold_ms.pipeline.batching import Request
from cold_ms.pipeline.engine import AMATEUR_MODEL, Engine
from cold_ms.runtime import configure

VARIANTS = ("greedy", "cold", "cold_two_pass", "cold_two_models", "cold_model")
ALPHA, BETA = 0.1, 0.5


class EngineVariant:
    """greedy and cold: the product path, through the Engine's own steps."""

    def __init__(self, model, adapters, expert, batch, max_len, mode, contrastive, weights, activations,
                 amateur_model=None, kv_dtype="float32"):
        self.engine = Engine(model, adapters, slots=batch, max_len=max_len, contrastive=contrastive, mode=mode,
                             weights=weights, activations=activations, amateur_model=amateur_model,
                             kv_dtype=kv_dtype)
        self.expert, self.contrastive, self.batch = expert, contrastive, batch
        self.amateur = AMATEUR_MODEL if amateur_model is not None else "base" if contrastive else None
        self.summary, self.base_bytes = self.engine.weights, step_bytes(self.engine.prepared)
        if amateur_model is not None:  # the amateur model's weights are read every step too
            self.base_bytes += step_bytes(self.engine.amateur_prepared)

    def prefill(self, prompt):
        reqs = [Request(prompt, adapter=self.expert, amateur=self.amateur, alpha=ALPHA, beta=BETA,
                        max_new_tokens=self.engine.max_len - len(prompt), ignore_eos=True)
                for _ in range(self.batch)]
        self.slots = [self.engine.new_state(i, r) for i, r in enumerate(reqs)]
        for st in self.slots:
            self.engine.bind(st)
        start = time.perf_counter()
        while not all(st.tokens for st in self.slots):  # the prompts in steps of the engine's budget
            self.step()
        return time.perf_counter() - start

    def step(self):
        start = time.perf_counter()
        for s, token in self.engine.step(self.slots):
            self.slots[s].tokens.append(token)
        return time.perf_counter() - start


class SplitVariant:
    """cold_two_pass (shared weights, three graph calls) and cold_two_models (two copies)."""

    def __init__(self, model, adapters, expert, batch, max_len, mode, two_models, weights, activations,
                 kv_dtype="float32"):
        configure(mode)
        cfg, self.batch, self.max_len, self.mode = model.config, batch, max_len, mode
        self.two_models = two_models
        kw = dict(choice=weights, activations=activations, kv_dtype=kv_dtype)
        stacked = adapters.stacked(cfg)
        if two_models:  # the expert as its own model: adapter merged into a copy of the base
            none = LoraLayout(0, 0, ())
            self.lm_e, _ = build_lm(merged_weights(model, adapters.adapters[adapters.slot(expert)]), cfg, none,
                                    batch, max_len, **kw)
            self.lm_a, prepared = build_lm(model.weights, cfg, none, batch, max_len, **kw)
            self.idx_e = self.idx_a = np.full((batch,), -1, np.int32)
        else:
            self.lm_e, prepared = build_lm(model.weights, cfg, adapters.layout(), batch, max_len, **kw)
            self.lm_a = CausalLM(cfg, adapters.layout(), batch, max_len, self.lm_e.backend, prepared,
                                 kv_dtype=kv_dtype)
            # the same arrays: both models' Parameters share their memory (one copy); KV caches their own
            for lm in (self.lm_e, self.lm_a):
                assign(lm, {name: getattr(p, "data", p) for name, p in prepared.items()})
                assign(lm, stacked)
            self.idx_e = np.full((batch,), adapters.slot(expert), np.int32)
            self.idx_a = np.full((batch,), -1, np.int32)
        self.step_e, self.step_a, self.score = LogitsStep(self.lm_e), LogitsStep(self.lm_a), ScoreStep()
        # Decode calls through their own cells, as the engine does, so that every variant
        # pays the same per-call overhead and only the fusion differs. The scoring sees
        # (batch, vocab) logits at prefill and decode alike.
        self.dec_e, self.dec_a = one_shape(LogitsStep(self.lm_e), mode), one_shape(LogitsStep(self.lm_a), mode)
        one_shape(self.score, mode)
        self.alpha = Tensor(np.full((batch,), ALPHA, np.float32))
        self.beta = Tensor(np.full((batch,), BETA, np.float32))
        self.summary, self.base_bytes = self.lm_e.weights_summary, step_bytes(prepared)

    def _choose(self, tokens, positions, last):
        configure(self.mode)
        args = (Tensor(tokens), Tensor(positions), None, Tensor(last))
        step_e, step_a = (self.dec_e, self.dec_a) if tokens.shape[1] == 1 else (self.step_e, self.step_a)
        e = step_e(*args, Tensor(self.idx_e))
        a = step_a(*args, Tensor(self.idx_a))
        if self.two_models:  # the naive user: logits to numpy, contrastive scoring by hand
            e, a = e.asnumpy(), a.asnumpy()
            valid = e >= np.log(ALPHA) + e.max(-1, keepdims=True)
            return np.argmax(np.where(valid, (1 + BETA) * e - BETA * a, -np.inf), -1)
        return self.score(e, a, self.alpha, self.beta).asnumpy()

    def prefill(self, prompt):
        chunks = [batching.prefill_chunk([prompt] * self.batch, start, size, self.max_len)
                  for start, size in batching.chunk_plan(len(prompt), batching.DEFAULT_CHUNKS)]
        start = time.perf_counter()
        for tokens, positions, last in chunks:  # the last chunk holds the prompt's last token
            self.ids = self._choose(tokens, positions, last)
        self.pos = len(prompt)
        return time.perf_counter() - start

    def step(self):
        tokens = np.asarray(self.ids, np.int32).reshape(self.batch, 1)
        positions = np.full((self.batch, 1), self.pos, np.int32)
        start = time.perf_counter()
        self.ids = self._choose(tokens, positions, np.zeros((self.batch,), np.int32))
        self.pos += 1
        return time.perf_counter() - start


def merged_weights(model, adapter):
    """The expert as a model of its own: a copy of every base weight (a second model shares
    no memory with the first, embeddings included), the adapter merged in (W + scaling * B @ A,
    in float32) and stored again in the base's type (q8_0 where no kernel reads that type)."""
    def copy(w):
        return wtypes.Packed(w.wtype, w.shape, np.array(w.data)) if isinstance(w, wtypes.Packed) else w.copy()

    weights = {name: copy(w) for name, w in model.weights.items()}
    for (layer, module), (a, b) in adapter.tensors.items():
        name = module_path(layer, module) + ".weight"
        stored = wtypes.type_of(weights[name])
        merged = (wtypes.to_float(weights[name]) + adapter.scaling * (b @ a)).astype(np.float32)
        keep = stored if stored.from_float and stored.code >= 0 else wtypes.TYPES["q8_0"]
        weights[name] = wtypes.convert(merged, keep if wtypes.fits(keep, merged.shape) else wtypes.F32)
    return weights


def build(variant, model, adapters, expert, batch, max_len, mode, weights="auto", activations="int16",
          amateur_model=None, kv_dtype="float32"):
    if variant in ("greedy", "cold", "cold_model"):
        if variant == "cold_model" and amateur_model is None:
            raise SystemExit("variant cold_model needs --amateur-model")
        return EngineVariant(model, adapters, expert, batch, max_len, mode, variant != "greedy", weights, activations,
                             amateur_model if variant == "cold_model" else None, kv_dtype)
    return SplitVariant(model, adapters, expert, batch, max_len, mode, variant == "cold_two_models", weights,
                        activations, kv_dtype)


def step_bytes(prepared):
    """Bytes of prepared base weights one decode step reads: all but an untied input embedding
    (a step gathers one row of it per token)."""
    untied = HEAD in prepared
    return sum((p.data if isinstance(p, Prepared) else p).nbytes for n, p in prepared.items()
               if not (untied and n == EMBED))


def weight_bytes(variant, base_bytes, adapter):
    """Bytes of weights one decode step must read: the base once (twice for the two-pass
    and two-model variants) plus the expert's LoRA matrices (float32; merged away in two_models;
    none for the llama.cpp peer, which runs the base model greedily)."""
    lora = sum((a.size + b.size) * 4 for a, b in adapter.tensors.values())
    return {"greedy": base_bytes + lora, "cold": base_bytes + lora, "cold_two_pass": 2 * base_bytes + lora,
            "cold_two_models": 2 * base_bytes, "hf": base_bytes + lora, "llamacpp": base_bytes,
            "cold_model": base_bytes + lora}[variant]
