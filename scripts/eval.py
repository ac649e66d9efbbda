#!/usr/bin/env python
"""Does CoLD help my adapter? Accuracy of base greedy, expert greedy and CoLD sweeps.

  python scripts/eval.py --task gsm_symbolic --n 500 --adapter math \
      --alpha 0.1 --beta 0.1,0.25,0.5,1.0 --out results/math

Tasks: gsm_symbolic, arith, csqa, asdiv, jsonl:PATH (GSM8K-format question/answer lines).
--adapter takes a shipped adapter name or NAME=DIR. Results go to OUT: one JSONL per run
(resumable: rerun the same command after an interruption), summary.json, summary.md and
summary.png (accuracy against beta, greedy lines for reference).
"""
import argparse
import os
import sys

os.environ.setdefault("GLOG_v", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from cold_ms.errors import ColdError, InputError  # noqa: E402
from cold_ms.pipeline.options import add_engine_arguments, engine_options, runs_on  # noqa: E402


def floats(text):
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True)
    p.add_argument("--n", type=int, default=100, help="number of evaluation examples")
    p.add_argument("--seed", type=int, help="evaluation seed for generated tasks (default 1000)")
    p.add_argument("--model", help="base model (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--adapter", required=True, help="expert: shipped adapter name or NAME=DIR")
    p.add_argument("--amateur", default="base", help="'base' or another adapter (NAME or NAME=DIR)")
    p.add_argument("--alpha", type=floats, default=[0.1], help="comma-separated list")
    p.add_argument("--beta", type=floats, default=[0.5], help="comma-separated list")
    p.add_argument("--modes", default="base,expert,cold")
    p.add_argument("--batch", type=int, default=8, help="slots decoded together")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--chat-template", help="built-in template instead of the checkpoint's")
    add_engine_arguments(p)
    p.add_argument("--out", required=True)
    return p.parse_args(argv)


def build(args):
    from cold_ms import tasks
    from cold_ms.config import ColdParams
    from cold_ms.evaluation import Evaluator, plan_runs
    from cold_ms.formats.adapters import AdapterRegistry, load_peft_adapter
    from cold_ms.pipeline.engine import Engine
    from cold_ms.formats.model import load_model
    from cold_ms.formats.shipped import resolve_adapter

    runs = plan_runs([m for m in args.modes.split(",") if m], args.alpha, args.beta)
    for run in runs:
        if run.mode == "cold":
            ColdParams(run.alpha, run.beta)
    examples = tasks.examples(args.task, "eval", args.n, args.seed)
    if not examples:
        raise InputError(f"task {args.task} has no evaluation examples")
    model = load_model(args.model)
    specs = [resolve_adapter(args.adapter)] + ([resolve_adapter(args.amateur)] if args.amateur != "base" else [])
    adapters = AdapterRegistry([load_peft_adapter(path, name, model.config) for name, path in specs])
    expert, amateur = specs[0][0], "base" if args.amateur == "base" else specs[1][0]
    ev = Evaluator({}, model.tokenizer, args.task, examples, args.out, expert, amateur,
                   args.max_new_tokens, args.chat_template)
    max_len = min(model.config.max_position_embeddings,
                  -(-(max(len(p) for p in ev.prompts.values()) + args.max_new_tokens) // 64) * 64)
    kinds = {"cold" if r.mode == "cold" else "greedy" for r in runs}
    ev.engines = {k: Engine(model, adapters, slots=args.batch, max_len=max_len, contrastive=k == "cold",
                            **engine_options(args)) for k in sorted(kinds)}
    print(f"cold_ms: {model.config.name} (stored {model.stored}); {runs_on(next(iter(ev.engines.values())))}",
          file=sys.stderr, flush=True)
    return ev, runs


def main(argv=None):
    args = parse_args(argv)
    from tqdm import tqdm
    from cold_ms.report import markdown, write_summary
    try:
        ev, runs = build(args)
        for run in runs:
            with tqdm(total=len(ev.examples), desc=run.name, unit="ex") as bar:
                bar.update(len(ev.examples) - len(ev.missing(run)))
                ev.run(run, bar)
        summary = ev.summary(runs)
    except ColdError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_summary(summary, args.out)
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
