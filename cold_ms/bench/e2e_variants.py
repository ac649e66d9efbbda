"""The decoding variants `bench.py e2e` compares, each behind the same two calls:
prefill(batch) -> seconds to the first token, and step() -> seconds of one decode step.

- greedy:          the expert alone (base + LoRA), B rows, one compiled step.
- cold:            the fused expert+amateur graph, 2B rows, scoring inside, ids out.
- cold_two_pass:   the same weights (shared Parameters); expert rows, amateur rows and
                   the scoring as three graph calls per step.
- cold_two_models: two model copies sharing no weight (the adapter merged into the first)
                   and contrastive scoring in numpy on the host: the naive CD a user
                   writes first.
"""
import time

import numpy as np
from mindspore import Tensor

from cold_ms.cells.cold_step import LogitsStep, ScoreStep, one_shape
from cold_ms.cells.transformer import CausalLM
from cold_ms.config import LoraLayout
from cold_ms.ops import panels
from cold_ms.pipeline import batching
from cold_ms.pipeline.batching import Request
from cold_ms.pipeline.checkpoint import module_path
from cold_ms.pipeline.engine import DEFAULT_CHUNKS, Engine, assign
from cold_ms.pipeline.runtime import configure

VARIANTS = ("greedy", "cold", "cold_two_pass", "cold_two_models")
ALPHA, BETA = 0.1, 0.5


class EngineVariant:
    """greedy and cold: the product path, through the Engine's own prefill/decode."""

    def __init__(self, model, adapters, expert, batch, max_len, mode, contrastive):
        self.engine = Engine(model, adapters, slots=batch, max_len=max_len, contrastive=contrastive, mode=mode)
        self.expert, self.contrastive, self.batch = expert, contrastive, batch

    def prefill(self, prompt):
        amateur = "base" if self.contrastive else None
        reqs = [Request(prompt, adapter=self.expert, amateur=amateur, alpha=ALPHA, beta=BETA,
                        max_new_tokens=self.engine.max_len - len(prompt), ignore_eos=True)
                for _ in range(self.batch)]
        self.slots = [self.engine.new_state(i, r) for i, r in enumerate(reqs)]
        start = time.perf_counter()
        for s, token in self.engine.prefill(list(range(self.batch)), self.slots):
            self.slots[s].tokens.append(token)
        return time.perf_counter() - start

    def step(self):
        start = time.perf_counter()
        for s, token in self.engine.decode(self.slots):
            self.slots[s].tokens.append(token)
        return time.perf_counter() - start


def share_weights(dst, src):
    """Point dst's weight Parameters at src's (one copy in memory); KV caches stay separate."""
    for name, param in src.parameters_and_names():
        if name.endswith(("k_cache", "v_cache")):
            continue
        owner = dst
        *path, attr = name.split(".")
        for part in path:
            owner = owner[int(part)] if part.isdigit() else getattr(owner, part)
        setattr(owner, attr, param)


class SplitVariant:
    """cold_two_pass (shared weights, three graph calls) and cold_two_models (two copies)."""

    def __init__(self, model, adapters, expert, batch, max_len, mode, two_models):
        configure(mode)
        cfg, self.batch, self.max_len, self.mode = model.config, batch, max_len, mode
        self.two_models = two_models
        if two_models:  # the expert as its own model: adapter merged into a copy of the base
            self.lm_e = CausalLM(cfg, LoraLayout(0, 0, ()), batch, max_len)
            model.use_layout(self.lm_e.weight_layout)
            assign(self.lm_e, merged_weights(model, adapters.adapters[adapters.slot(expert)]))
            self.lm_a = CausalLM(cfg, LoraLayout(0, 0, ()), batch, max_len)
            assign(self.lm_a, model.weights)
            self.idx_e = self.idx_a = np.full((batch,), -1, np.int32)
        else:
            self.lm_e = CausalLM(cfg, adapters.layout(), batch, max_len)
            model.use_layout(self.lm_e.weight_layout)
            assign(self.lm_e, model.weights)
            assign(self.lm_e, adapters.stacked(cfg))
            self.lm_a = CausalLM(cfg, adapters.layout(), batch, max_len)
            share_weights(self.lm_a, self.lm_e)
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
                  for start, size in batching.chunk_plan(len(prompt), DEFAULT_CHUNKS)]
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
    no memory with the first, embeddings included), the adapter merged in: W + scaling * B @ A,
    in the layout the model's weights are in."""
    weights = {name: w.copy() for name, w in model.weights.items()}
    for (layer, module), (a, b) in adapter.tensors.items():
        name = module_path(layer, module) + ".weight"
        merged = (panels.to_rows(weights[name]) + adapter.scaling * (b @ a)).astype(np.float32)
        weights[name] = panels.to_panels(merged) if weights[name].ndim == 3 else merged
    return weights


def build(variant, model, adapters, expert, batch, max_len, mode):
    if variant in ("greedy", "cold"):
        return EngineVariant(model, adapters, expert, batch, max_len, mode, variant == "cold")
    return SplitVariant(model, adapters, expert, batch, max_len, mode, variant == "cold_two_models")


def weight_bytes(variant, model, adapter):
    """Bytes of weights one decode step must read: the base once (twice for the two-pass
    and two-model variants) plus the expert's LoRA matrices (merged away in two_models).
    An untied input embedding does not count: a step gathers one row of it per token."""
    cfg = model.config
    base = (cfg.num_params - (0 if cfg.tie_word_embeddings else cfg.vocab_size * cfg.hidden_size)) * 4
    lora = sum((a.size + b.size) * 4 for a, b in adapter.tensors.values())
    return {"greedy": base + lora, "cold": base + lora, "cold_two_pass": 2 * base + lora,
            "cold_two_models": 2 * base, "hf": base + lora}[variant]
