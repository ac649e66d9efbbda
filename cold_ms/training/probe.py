"""Held-in recall during training: has the adapter learned what it is taught yet?

Every `every` optimizer steps (and after the last) the adapter as trained so far answers the
probe questions (cold_ms.tasks.held_in: training questions, asked as trained) greedily through
the inference Engine, and the task's own scorer marks them. The history of (step, recall)
lands in OUT/probe.csv and probe.png after every probe; reaching `target` stops the run
(Trainer.run's probe).

The engine is built at the first probe, once the training graphs have compiled: a process has
one compile cache, for graphs compiled in a fixed order (cold_ms/runtime.py), so the engine's
steps compile outside it, each when first used. Its one adapter slot is filled with the trainer's own LoRA
Parameters at every probe (slot B holds scaling * B^T in both), nothing written to disk.
"""
import os
import tempfile

from cold_ms import tasks
from cold_ms.cells.transformer import assign
from cold_ms.errors import ConfigError
from cold_ms.formats.adapters import AdapterRegistry, load_peft_adapter
from cold_ms.formats.chat import chat_prompt_ids
from cold_ms.pipeline.batching import Request
from cold_ms.runtime import stop_compile_cache

NAME = "training"  # the probe engine's adapter


class RecallProbe:
    """trainer: the Trainer whose adapter is probed; examples: the probe questions."""

    def __init__(self, trainer, task, examples, target, every, max_new_tokens=32, slots=8, chat_template=None,
                 log=print):
        if not 0 < target <= 1 or every < 1 or max_new_tokens < 1:
            raise ConfigError(f"--until-recall must be in (0, 1] (got {target}), --probe-every and the probe's "
                              f"tokens >= 1 (got {every}, {max_new_tokens})")
        self.trainer, self.task, self.examples, self.target, self.every = trainer, task, examples, target, every
        self.max_new, self.slots, self.log = max_new_tokens, min(slots, len(examples)), log
        tok = trainer.model.tokenizer
        self.prompts = [chat_prompt_ids(tok, [{"role": "user", "content": e.question}], chat_template)
                        for e in examples]
        self.history = []  # [[optimizer step, recall]]; restored from the checkpoint on a resume
        self.engine = None

    def __call__(self, step, last=False):
        """After optimizer step `step`: probe when due; why to stop (recall reached), or None."""
        if step % self.every and not last:
            return None
        recall = self.recall()
        self.history = [h for h in self.history if h[0] < step] + [[step, recall]]
        if self.trainer.world.rank == 0:  # the curve so far, to watch a long run
            self.write(self.trainer.out)
        self.log(f"step {step}: held-in recall {recall:.3f} on {len(self.examples)} training questions "
                 f"(target {self.target:g})")
        if recall >= self.target:
            return f"held-in recall {recall:.3f} >= {self.target:g} at step {step} ({len(self.examples)} questions)"
        return None

    def recall(self):
        """The share of the probe the current adapter answers correctly, greedy."""
        engine = self._engine()
        assign(engine.lm, {n: p.asnumpy() for n, p in self.trainer.lm.parameters_and_names()
                           if n.endswith((".lora_a", ".lora_b"))})
        requests = [Request(p, adapter=NAME, amateur=None, alpha=0.1, beta=0.0, max_new_tokens=self.max_new)
                    for p in self.prompts]
        texts = [self.trainer.model.tokenizer.decode(r.token_ids) for r in engine.generate(requests)]
        hits = sum(bool(tasks.score(self.task, t, e)["correct"]) for t, e in zip(texts, self.examples))
        return round(hits / len(self.examples), 4)

    def _engine(self):
        """The greedy engine with one adapter slot of the trainer's layout (float32 stacks)."""
        if self.engine is None:
            from cold_ms.pipeline.engine import Engine
            from cold_ms.training.trainer import export_peft
            model, cfg = self.trainer.model, self.trainer.cfg
            longest = max(len(p) for p in self.prompts) + self.max_new
            max_len = min(model.config.max_position_embeddings, -(-longest // 64) * 64)
            with tempfile.TemporaryDirectory() as tmp:  # the registry reads a PEFT adapter's layout
                export_peft(self.trainer.lm, cfg, tmp, model.config.name)
                adapter = load_peft_adapter(tmp, NAME, model.config)
                self.engine = Engine(model, AdapterRegistry([adapter]), slots=self.slots, max_len=max_len,
                                     contrastive=False)  # it copies the adapter into its stacks
            stop_compile_cache()  # its step graphs compile when first used (a probe uses few)
        return self.engine

    def write(self, out):
        """OUT/probe.csv and OUT/probe.png: recall against optimizer step."""
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "probe.csv"), "w") as f:
            f.write("step,recall\n" + "".join(f"{s},{r:.4f}\n" for s, r in self.history))
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([s for s, _ in self.history], [r for _, r in self.history], marker="o", lw=0.8)
        ax.axhline(self.target, ls="--", color="gray", label=f"target {self.target:g}")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(f"held-in recall (n={len(self.examples)})")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(out, "probe.png"), dpi=120)
        plt.close(fig)
