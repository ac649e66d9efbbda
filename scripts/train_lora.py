#!/usr/bin/env python
"""Train a LoRA adapter with MindSpore on the CPU and write it in PEFT format.

  python scripts/train_lora.py --task arith --n 2000 --out adapters/arith
  python scripts/train_lora.py --train-file data.jsonl --out my_adapter   # {"question", "answer"} lines
  python scripts/train_lora.py --task facts --facts 40 --epochs 30 --until-recall 0.95 --probe-every 25 \\
      --out adapters/facts40

Interrupted runs resume from OUT/checkpoint (same command). The adapter, loss.csv and
loss.png land in OUT. --until-recall R: every --probe-every optimizer steps, the adapter so far
answers --probe-n training questions (asked as trained) greedily; the run stops once that
held-in recall reaches R (else at the end of --epochs/--max-steps); probe.csv and probe.png
hold the curve, stderr says why the run stopped.
"""
import argparse
import os
import sys

os.environ.setdefault("GLOG_v", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from cold_ms.errors import ColdError  # noqa: E402


def steps(text):
    try:
        return {int(x) for x in text.split(",") if x.strip()}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated step numbers, got {text!r}") from None


class Help(argparse.RawDescriptionHelpFormatter):
    """The description as written; every option that has a default shows it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is None or action.default is False or action.default in ((), argparse.SUPPRESS) \
                or "default" in text:
            return text
        return f"{text} (default: {action.default})".lstrip()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=Help)
    p.add_argument("--model", help="base model (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--task", help="gsm_symbolic, arith, csqa, facts, counterfacts or jsonl:PATH (its training split)")
    p.add_argument("--train-file", help="JSON lines with question/answer (same as --task jsonl:PATH)")
    p.add_argument("--n", type=int, help="number of training examples (default: all)")
    p.add_argument("--facts", type=int, help="facts, counterfacts: teach only the first K entities (default: all)")
    p.add_argument("--data-seed", type=int, help="dataset seed (default: the task's training seed)")
    p.add_argument("--out", required=True, help="directory of the adapter (PEFT format), its curve and checkpoint")
    p.add_argument("--rank", type=int, default=16, help="LoRA rank r")
    p.add_argument("--alpha", type=float, default=32.0, help="LoRA alpha (scaling alpha / r)")
    p.add_argument("--targets", default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
                   help="projections that get a LoRA pair")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    p.add_argument("--epochs", type=int, default=1, help="passes over the examples")
    p.add_argument("--batch", type=int, default=8, help="examples per micro-batch")
    p.add_argument("--max-len", type=int, default=256, help="longer examples (prompt + answer tokens) are skipped")
    p.add_argument("--seed", type=int, default=0, help="of the LoRA initialisation and the example order")
    p.add_argument("--accumulate", type=int, default=1,
                   help="micro-batches of --batch per optimizer step (the memory of one micro-batch)")
    p.add_argument("--save-every", type=int, default=50, help="optimizer steps between checkpoints")
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: all epochs)")
    p.add_argument("--chat-template", help="built-in template (chatml, llama2) instead of the checkpoint's")
    p.add_argument("--snapshots", type=steps, default=(), help="comma-separated optimizer steps after which the adapter is "
                                                   "also written to OUT/step-N (e.g. an early checkpoint as amateur)")
    p.add_argument("--save-dtype", choices=("float32", "float16"), default="float32",
                   help="dtype of the written adapter (float16 halves its size)")
    p.add_argument("--until-recall", type=float, help="stop once held-in recall on the probe reaches this (0-1]")
    p.add_argument("--probe-every", type=int, default=25, help="with --until-recall: optimizer steps between probes")
    p.add_argument("--probe-n", type=int, default=32, help="with --until-recall: training questions in the probe")
    p.add_argument("--probe-tokens", type=int, default=32, help="with --until-recall: new tokens per probe answer")
    return p.parse_args(argv)


def write_curve(out, losses):
    with open(os.path.join(out, "loss.csv"), "w") as f:
        f.write("step,loss\n" + "".join(f"{i + 1},{v:.5f}\n" for i, v in enumerate(losses)))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(losses) + 1), losses, lw=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("answer-token loss")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "loss.png"), dpi=120)


def make_probe(args, trainer, task, examples):
    """The held-in recall probe of --until-recall, or None."""
    if args.until_recall is None:
        return None
    from cold_ms import tasks
    from cold_ms.training.probe import RecallProbe
    return RecallProbe(trainer, task, tasks.held_in(examples, args.probe_n), args.until_recall, args.probe_every,
                       args.probe_tokens, args.batch, args.chat_template, log=lambda m: print(m, file=sys.stderr))


def stop_reason(trainer, probe):
    if trainer.stopped:
        return trainer.stopped
    reason = f"all {len(trainer.plan)} steps of --epochs/--max-steps ran"
    if probe is not None and probe.history:
        reason += f" (held-in recall {probe.history[-1][1]:.3f} < {probe.target:g})"
    return reason


def main(argv=None):
    args = parse_args(argv)
    from cold_ms.distributed import finish, world
    world()  # under msrun: join the workers first (the scheduler process stays in here)
    from cold_ms import tasks
    from cold_ms.formats.model import load_model
    from cold_ms.training.trainer import TrainConfig, Trainer
    try:
        task = f"jsonl:{args.train_file}" if args.train_file else args.task
        if not task:
            raise ColdError("give --task or --train-file")
        cfg = TrainConfig(rank=args.rank, alpha=args.alpha, targets=tuple(args.targets.split(",")),
                          lr=args.lr, epochs=args.epochs, batch=args.batch, max_len=args.max_len,
                          seed=args.seed, save_every=args.save_every, max_steps=args.max_steps,
                          accumulate=args.accumulate)
        model = load_model(args.model)
        examples = tasks.examples(task, "train", args.n, args.data_seed, args.facts)
        print(f"training on {len(examples)} {task} examples", file=sys.stderr)
        trainer = Trainer(model, examples, cfg, args.out, log=lambda m: print(m, file=sys.stderr),
                          chat_template=args.chat_template)
        probe = make_probe(args, trainer, task, examples)
        losses, seconds = trainer.run(save_dtype=args.save_dtype, snapshots=args.snapshots, probe=probe)
    except ColdError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finish()
    if world().rank == 0:  # every rank holds the same losses and probes; one writes them
        write_curve(args.out, losses)
        if probe is not None:
            probe.write(args.out)
    print(f"stopped: {stop_reason(trainer, probe)}", file=sys.stderr)
    print(f"wrote {args.out}: {len(losses)} steps, last loss {losses[-1]:.3f}, {seconds:.0f}s this run",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
