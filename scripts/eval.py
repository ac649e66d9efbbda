#!/usr/bin/env python
"""Does CoLD help my adapter? Accuracy of base greedy, expert greedy and CoLD sweeps.

  python scripts/eval.py --task gsm_symbolic --n 500 --adapter math \
      --alpha 0.1 --beta 0.1,0.25,0.5,1.0 --out results/math
  python scripts/eval.py --task facts --facts 75 --every-template --tune --val-n 200 --n 400 \
      --adapter facts=adapters/knowledge/facts --max-new-tokens 16 --out results/facts

Tasks: gsm_symbolic, arith, csqa, asdiv, facts, counterfacts, jsonl:PATH (GSM8K-format
question/answer lines). --adapter takes a shipped adapter name or NAME=DIR. Results go to
OUT: one JSONL per run (resumable: rerun the same command after an interruption),
summary.json, summary.md and summary.png.

--tune: alpha/beta are chosen on the validation split (the grid --alpha x --beta; highest
accuracy, ties to the smaller beta, then the larger alpha), recorded in OUT/choice.json,
and only then are expert greedy and the chosen setting evaluated on the test split, once,
with 95% intervals and an exact McNemar test of the paired answers. The runs' files go to
OUT/validation and OUT/test. The default grid is the whole alpha {0.01, 0.05, 0.1, 0.2, 0.5}
x beta {0.05, 0.1, 0.25, 0.5, 1, 2}.

Every summary gives per run the accuracy (a knowledge task's learned-value rate), for
counterfacts the base-value rate, for facts and counterfacts the neither rate, and the mean
generated tokens per answer; each CoLD run is paired against expert greedy (counts and exact
McNemar p per score).

Under msrun (msrun --worker_num N ... scripts/eval.py ...) each rank evaluates every N-th
example of every run; the summary (and the choice of --tune) is made over all ranks' results
and written by rank 0.
"""
import argparse
import os
import sys

os.environ.setdefault("GLOG_v", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from cold_ms.config import BETA_SCHEDULES  # noqa: E402
from cold_ms.errors import ColdError, InputError  # noqa: E402
from cold_ms.pipeline.options import add_engine_arguments, engine_options, runs_on  # noqa: E402
from cold_ms.tuning import ALPHAS, BETAS  # noqa: E402


def floats(text):
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True)
    p.add_argument("--split", choices=("validation", "test", "eval"),
                   help="split to evaluate (default eval: the held-out set as before validation existed); "
                        "not with --tune")
    p.add_argument("--tune", action="store_true", help="choose alpha/beta on validation, then evaluate on test")
    p.add_argument("--n", type=int, default=100, help="number of evaluation (with --tune: test) examples")
    p.add_argument("--val-n", type=int, help="with --tune: number of validation examples (default: --n)")
    p.add_argument("--seed", type=int, help="seed of a generated task's split, or of a whole knowledge task")
    p.add_argument("--facts", type=int, help="facts, counterfacts: only the first K entities, as train_lora.py "
                                             "--facts K taught them (default: all)")
    p.add_argument("--every-template", action="store_true",
                   help="facts, counterfacts: ask each validation/test fact with every held-out question "
                        "(facts x templates questions) instead of one")
    p.add_argument("--model", help="base model (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--adapter", required=True, help="expert: shipped adapter name or NAME=DIR")
    p.add_argument("--amateur", default="base", help="'base' or another adapter (NAME or NAME=DIR)")
    p.add_argument("--alpha", type=floats, help="comma-separated list (default 0.1; with --tune the grid "
                                                f"{','.join(map(str, ALPHAS))})")
    p.add_argument("--beta", type=floats, help="comma-separated list (default 0.5; with --tune the grid "
                                               f"{','.join(map(str, BETAS))})")
    p.add_argument("--beta-schedule", choices=BETA_SCHEDULES, default="fixed",
                   help="of the CoLD runs: fixed, or entropy (beta * H(p_a) / (H(p_e) + H(p_a)) at every step)")
    p.add_argument("--modes", help="default base,expert,cold (--tune runs expert and cold)")
    p.add_argument("--batch", type=int, default=8, help="slots decoded together")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--chat-template", help="built-in template instead of the checkpoint's")
    add_engine_arguments(p)
    p.add_argument("--out", required=True)
    p.add_argument("--save-choice", action="store_true",
                   help="with --tune: write the chosen setting and its evidence into the adapter directory "
                        "as cold_config.json, the adapter's default wherever a request does not say")
    args = p.parse_args(argv)
    if args.save_choice and not args.tune:
        p.error("--save-choice needs --tune (the choice is made on validation)")
    return args


def plan(args):
    """({split: (n, directory)}, runs of a plain evaluation or None, alphas, betas)."""
    from cold_ms.evaluation import plan_runs
    alphas = args.alpha or (list(ALPHAS) if args.tune else [0.1])
    betas = args.beta or (list(BETAS) if args.tune else [0.5])
    if not args.tune:
        if args.val_n is not None:
            raise InputError("--val-n is for --tune (give --n and --split)")
        runs = plan_runs([m for m in (args.modes or "base,expert,cold").split(",") if m], alphas, betas,
                         args.beta_schedule)
        return {args.split or "eval": (args.n, args.out)}, runs, alphas, betas
    if args.split or args.modes:
        raise InputError("--tune evaluates expert greedy and CoLD on validation, then on test: drop --split/--modes")
    splits = {"validation": (args.val_n or args.n, os.path.join(args.out, "validation")),
              "test": (args.n, os.path.join(args.out, "test"))}
    return splits, None, alphas, betas


def build(args, world):
    """({split: Evaluator}, runs or None, alphas, betas), engines built for the longest prompt."""
    from cold_ms import tasks
    from cold_ms.config import ColdParams
    from cold_ms.evaluation import Evaluator
    from cold_ms.formats.adapters import AdapterRegistry, load_peft_adapter
    from cold_ms.formats.model import load_model
    from cold_ms.formats.shipped import resolve_adapter
    from cold_ms.pipeline.engine import Engine

    splits, runs, alphas, betas = plan(args)
    for a in alphas:
        for b in betas:
            ColdParams(a, b)
    examples = {s: tasks.examples(args.task, s, n, args.seed, args.facts, args.every_template) for s, (n, _) in splits.items()}
    for s, rows in examples.items():
        if not rows:
            raise InputError(f"task {args.task} has no {s} examples")
    model = load_model(args.model)
    specs = [resolve_adapter(args.adapter)] + ([resolve_adapter(args.amateur)] if args.amateur != "base" else [])
    adapters = AdapterRegistry([load_peft_adapter(path, name, model.config) for name, path in specs])
    expert, amateur = specs[0][0], "base" if args.amateur == "base" else specs[1][0]
    evs = {s: Evaluator({}, model.tokenizer, args.task, examples[s], out, expert, amateur, args.max_new_tokens,
                        args.chat_template, world) for s, (_, out) in splits.items()}
    longest = max(len(p) for ev in evs.values() for p in ev.prompts.values())
    max_len = min(model.config.max_position_embeddings, -(-(longest + args.max_new_tokens) // 64) * 64)
    kinds = {"cold" if r.mode == "cold" else "greedy" for r in runs} if runs else {"cold", "greedy"}
    engines = {k: Engine(model, adapters, slots=args.batch, max_len=max_len, contrastive=k == "cold",
                         **engine_options(args)) for k in sorted(kinds)}
    for ev in evs.values():
        ev.engines = engines
    print(f"cold_ms: {model.config.name} (stored {model.stored}); {runs_on(next(iter(engines.values())))}",
          file=sys.stderr, flush=True)
    return evs, runs, alphas, betas


def run_with_bar(ev, run):
    from tqdm import tqdm
    with tqdm(total=len(ev.share), desc=f"{os.path.basename(ev.out)}/{run.name}", unit="ex") as bar:
        bar.update(len(ev.share) - len(ev.missing(run)))
        ev.run(run, bar)


def save_choice(args, summary):
    """--save-choice: the tuned setting, with its evidence, into the adapter's cold_config.json."""
    from cold_ms import adapter_defaults
    from cold_ms.formats.shipped import resolve_adapter
    from cold_ms.tuning import adapter_settings
    settings, evidence = adapter_settings(summary)
    path = adapter_defaults.write(resolve_adapter(args.adapter)[1], settings, evidence)
    print(f"cold_ms: wrote {path}: alpha {settings['alpha']:g}, beta {settings['beta']:g}", file=sys.stderr)


def main(argv=None):
    args = parse_args(argv)
    from cold_ms.distributed import finish, world
    from cold_ms.report import markdown, tune_markdown, write_summary, write_tune_summary
    from cold_ms.tuning import Tuner
    try:
        ranks = world()  # under msrun: this rank's share of every run
        evs, runs, alphas, betas = build(args, ranks)
        if args.tune:
            tuner = Tuner(evs["validation"], evs["test"], alphas, betas, args.out, run_with_bar, args.beta_schedule)
            tuner.validate()
            tuner.test()
            summary, write, text = tuner.summary(), write_tune_summary, tune_markdown
        else:
            ev = next(iter(evs.values()))
            for run in runs:
                run_with_bar(ev, run)
            summary, write, text = ev.summary(runs), write_summary, markdown
    except ColdError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if ranks.rank == 0:
        write(summary, args.out)
        print(text(summary))
        if args.save_choice:
            save_choice(args, summary)
    finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
