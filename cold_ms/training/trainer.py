"""LoRA fine-tuning loop: frozen base, trained A/B, periodic checkpoints, PEFT export.

The adapter trains in one slot of the inference Cells (gather backend, which MindSpore
can differentiate). Slot B holds scaling * lora_B^T, so the export divides the scaling
back out and writes PEFT's lora_A (r, in) / lora_B (out, r) layout and names.
"""
import contextlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Tuple

import numpy as np
import mindspore as ms
from mindspore import Tensor, nn, ops

from cold_ms.cells.transformer import CausalLM, assign
from cold_ms.config import LORA_TARGETS, LoraLayout
from cold_ms.distributed import all_sum, world
from cold_ms.errors import ConfigError
from cold_ms.formats.names import module_path
from cold_ms.runtime import compiling, configure, use_compile_cache
from cold_ms.training.data import batch_shape, encode_example, epoch_batches, make_batch
from cold_ms.training.loss import AnswerLoss, LossAndGrads


@dataclass(frozen=True)
class TrainConfig:
    rank: int = 16
    alpha: float = 32.0
    targets: Tuple[str, ...] = LORA_TARGETS
    lr: float = 1e-3
    epochs: int = 1
    batch: int = 8
    max_len: int = 256
    warmup: float = 0.05
    seed: int = 0
    save_every: int = 50  # optimizer steps between checkpoints
    max_steps: int = 0  # micro-batches to run at most; 0: all epochs
    accumulate: int = 1  # micro-batches per optimizer step (memory grows with batch, not with this)

    def __post_init__(self):
        if min(self.rank, self.batch, self.epochs, self.accumulate) < 1 or self.lr <= 0:
            raise ConfigError("rank, batch, epochs and accumulate must be >= 1 and lr > 0")
        LoraLayout(1, self.rank, tuple(self.targets))

    @property
    def scaling(self):
        return self.alpha / self.rank


def lr_schedule(total, cfg):
    """Linear warm-up, then cosine decay to 10% of the peak, one value per step."""
    warm = max(1, int(total * cfg.warmup))
    return [cfg.lr * (s + 1) / warm if s < warm else
            cfg.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
            for s in range(total)]


def init_lora(lm, cfg, seed):
    """PEFT's initialisation: A ~ kaiming-uniform(a=sqrt(5)) = U(+-1/sqrt(in)), B = 0."""
    rng = np.random.default_rng(seed)
    for name, p in lm.parameters_and_names():
        if name.endswith(".lora_a"):
            bound = 1.0 / math.sqrt(p.shape[2])
            p.set_data(Tensor(rng.uniform(-bound, bound, p.shape).astype(np.float32)))
        elif name.endswith(".lora_b"):
            p.set_data(Tensor(np.zeros(p.shape, np.float32)))


def export_peft(lm, cfg, out_dir, base_name, dtype="float32"):
    """Write adapter_config.json + adapter_model.safetensors (PEFT layout and names)."""
    from safetensors.numpy import save_file
    params = dict(lm.parameters_and_names())
    tensors = {}
    for layer in range(lm.cfg.num_layers):
        for module in cfg.targets:
            path = module_path(layer, module)
            a = params[path + ".lora_a"].asnumpy()[0]            # (r, in)
            b = params[path + ".lora_b"].asnumpy()[0].T / cfg.scaling  # (out, r)
            tensors[f"base_model.model.{path}.lora_A.weight"] = np.ascontiguousarray(a, dtype)
            tensors[f"base_model.model.{path}.lora_B.weight"] = np.ascontiguousarray(b, dtype)
    os.makedirs(out_dir, exist_ok=True)
    save_file(tensors, os.path.join(out_dir, "adapter_model.safetensors"))
    with open(os.path.join(out_dir, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": cfg.rank, "lora_alpha": cfg.alpha,
                   "target_modules": list(cfg.targets), "lora_dropout": 0.0, "bias": "none",
                   "fan_in_fan_out": False, "use_rslora": False, "base_model_name_or_path": base_name}, f, indent=1)


class Trainer:
    def __init__(self, model, examples, cfg, out_dir, log=print, chat_template=None):
        configure("graph")
        self.model, self.cfg, self.out, self.log = model, cfg, out_dir, log
        encoded = [encode_example(model.tokenizer, e.question, e.target, chat_template) for e in examples]
        self.encoded = [e for e in encoded if len(e[0]) <= cfg.max_len]
        if len(self.encoded) < len(encoded):
            log(f"skipped {len(encoded) - len(self.encoded)} examples longer than {cfg.max_len} tokens")
        if not self.encoded:
            lengths = sorted(len(e[0]) for e in encoded)
            raise ConfigError(f"no training example fits in max_len {cfg.max_len}: the {len(encoded)} examples "
                              f"are {lengths[0]}-{lengths[-1]} tokens long" if encoded else
                              "no training examples") from None
        self.world = world()  # under msrun: this rank's share of every batch, gradients summed
        if cfg.batch % self.world.size:
            raise ConfigError(f"--batch {cfg.batch} must be a multiple of the {self.world.size} workers")
        self.plan = [b for epoch in range(cfg.epochs)
                     for b in epoch_batches(self.encoded, cfg.batch, cfg.seed, epoch)]
        if cfg.max_steps:
            if cfg.max_steps > len(self.plan):  # --max-steps caps the epochs' steps, never adds epochs
                log(f"--max-steps {cfg.max_steps}: {cfg.epochs} epoch(s) of {len(self.encoded)} examples in batches "
                    f"of {cfg.batch} make only {len(self.plan)} steps; running {len(self.plan)} "
                    f"(raise --epochs for more)")
            self.plan = self.plan[:cfg.max_steps]
        self.shape = batch_shape(self.encoded, self.plan)
        # the graphs (loss and gradients, then the optimizer's; or both fused, self.fused) are fixed by
        # the config, the batch shape and the world size (rows per worker; fused on one worker only)
        use_compile_cache(("train", model.config, cfg, self.shape, self.world.size))
        self.lm = CausalLM(model.config, LoraLayout(1, cfg.rank, tuple(cfg.targets)), rows=1,
                           max_len=-(-cfg.max_len // 64) * 64, backend="gather")
        assign(self.lm, model.float_weights())
        init_lora(self.lm, cfg, cfg.seed)
        params = self.lm.trainable_params()
        updates = -(-len(self.plan) // cfg.accumulate)
        self.opt = nn.AdamWeightDecay(params, learning_rate=lr_schedule(updates, cfg))
        self.stopped = None  # why the run stopped before its plan's end (a probe's reason)
        self.grad_step = LossAndGrads(AnswerLoss(self.lm), params)
        # one worker updating every micro-batch: loss, gradients and the update in one graph (the
        # gradients never leave it; embedded model, batch 8, alternating: 3.5 against 3.7 s a step)
        self.fused = nn.TrainOneStepCell(self.grad_step.net, self.opt) \
            if cfg.accumulate == 1 and self.world.size == 1 else None

    # ---- checkpoints ------------------------------------------------------------------
    def _state_path(self):
        return os.path.join(self.out, "checkpoint", "state.json")

    def _save(self, step, losses, probe=None):
        ckpt_dir = os.path.join(self.out, "checkpoint")
        os.makedirs(ckpt_dir, exist_ok=True)
        # A/B, Adam moments, global_step, under the Parameters' own names, which are what
        # load_param_into_net matches (wrapping Cells prefix them, e.g. "lm.model...")
        keep = [{"name": p.name, "data": p} for n, p in self.opt.parameters_and_names()
                if not n.startswith("learning_rate")]
        # One file per step, named in state.json: with a single overwritten file, a kill
        # between writing it and writing state.json resumed the next step's optimizer
        # state at the previous step (seen: the step's update applied twice and the
        # learning-rate schedule indexed past its end).
        name = f"train-{step}.ckpt"
        ms.save_checkpoint(keep, os.path.join(ckpt_dir, name))
        state = {"step": step, "losses": losses, "config": asdict(self.cfg), "checkpoint": name,
                 "probe": probe.history if probe else [], "stopped": self.stopped}
        with open(self._state_path() + ".tmp", "w") as f:
            json.dump(state, f)
        os.replace(self._state_path() + ".tmp", self._state_path())  # state last: it commits the step
        for old in os.listdir(ckpt_dir):
            if old.startswith("train") and old.endswith(".ckpt") and old != name:
                os.remove(os.path.join(ckpt_dir, old))

    def _resume(self, probe=None):
        if not os.path.isfile(self._state_path()):
            return 0, []
        with open(self._state_path()) as f:
            state = json.load(f)
        if state["config"] != json.loads(json.dumps(asdict(self.cfg))):
            raise ConfigError(f"{self.out} holds a run with other settings; use a new --out")
        ms.load_param_into_net(self.opt, ms.load_checkpoint(
            # runs saved before checkpoints were named per step kept one train.ckpt
            os.path.join(self.out, "checkpoint", state.get("checkpoint", "train.ckpt"))), strict_load=False)
        self.log(f"resuming at step {state['step']} of {len(self.plan)}")
        self.stopped = state.get("stopped")
        if probe is not None:
            probe.history = state.get("probe", [])
        return state["step"], state["losses"]

    # ---- loop -------------------------------------------------------------------------
    def run(self, progress=True, save_dtype="float32", snapshots=(), probe=None):
        """Train to the end (or max_steps), resuming where a previous run stopped; `snapshots`:
        optimizer steps after which the adapter is also written to OUT/step-N (an early
        checkpoint of the same run serves as a CoLD amateur); `probe(step, last)`, called after
        every optimizer step, returns why to stop there (kept in self.stopped, and in the
        checkpoint with probe.history, so a rerun resumes both) or None."""
        from tqdm import tqdm
        done, losses = self._resume(probe)
        if self.stopped:
            self.log(f"this run already stopped at step {done}: {self.stopped} (a new --out trains further)")
        bar = tqdm(total=len(self.plan), initial=done, disable=not progress, unit="step")
        start = time.perf_counter()
        pending, k = None, self.cfg.accumulate
        first = done if not self.stopped else len(self.plan)
        for step in range(first, len(self.plan)):
            last = step + 1 == len(self.plan)
            update = (step + 1) % k == 0 or last  # one optimizer step per `accumulate` micro-batches
            with compiling() if step < first + k else contextlib.nullcontext():  # the graphs compile
                if k == 1:
                    loss = self.step(self.plan[step])
                else:
                    loss, grads = self._batch_grads(self.plan[step])
                    pending = grads if pending is None else tuple(a + g for a, g in zip(pending, grads))
                    if update:
                        self._apply(pending, step % k + 1)
                        pending = None
            if not math.isfinite(loss):  # nothing of this step is saved
                raise ConfigError(f"the loss diverged at step {step} (lower --lr)")
            losses.append(loss)
            bar.set_postfix(loss=f"{loss:.3f}")
            bar.update(1)
            if update:
                if self.world.rank == 0 and (step + 1) // k in snapshots:
                    export_peft(self.lm, self.cfg, os.path.join(self.out, f"step-{(step + 1) // k}"),
                                self.model.config.name, save_dtype)
                self.stopped = probe((step + 1) // k, last) if probe is not None else None
                if self.world.rank == 0 and (((step + 1) // k) % self.cfg.save_every == 0 or last or self.stopped):
                    self._save(step + 1, losses, probe)
                if self.stopped:
                    break
        bar.close()
        if self.world.rank == 0:
            export_peft(self.lm, self.cfg, self.out, self.model.config.name, save_dtype)
        return losses, time.perf_counter() - start

    def step(self, rows):
        """One micro-batch (indices into the encoded examples) and its optimizer update, as run()
        does with accumulate 1: the mean answer-token loss. What `bench.py train` times."""
        if self.fused is not None:
            batch = make_batch([self.encoded[i] for i in rows], self.cfg.batch, self.shape)
            return float(self.fused(*(Tensor(a) for a in batch)).asnumpy())
        loss, grads = self._batch_grads(rows)
        self._apply(grads, 1)
        return loss

    def _apply(self, grads, count):
        """The optimizer update with the mean of `count` micro-batches' summed gradients (no
        division for one: each would be an op of its own outside the graphs)."""
        self.opt(grads if count == 1 else tuple(g / count for g in grads))

    def _batch_grads(self, rows):
        """(loss, gradients) of the mean answer-token loss of one batch. Each rank computes its
        share of the rows; their gradients, weighted by the answer tokens they hold, are summed
        over the ranks, so any number of workers gives the one-worker gradient (up to the
        order of float sums)."""
        examples = [self.encoded[i] for i in rows]
        mine = self.world.share(examples)
        total = sum(n for _, n in examples)
        held = sum(n for _, n in mine)
        if held:
            batch = make_batch(mine, self.cfg.batch // self.world.size, self.shape)
            loss, grads = self.grad_step(*(Tensor(a) for a in batch))
        else:  # a short last batch can leave a rank nothing: it adds zeros
            loss, grads = Tensor(np.zeros((), np.float32)), tuple(ops.zeros_like(p) for p in self.grad_step.weights)
        if self.world.size == 1:
            return float(loss.asnumpy()), grads
        reduced = all_sum(tuple(grads) + (loss,), weight=held / total)
        return float(reduced[-1].asnumpy()), reduced[:-1]
