#!/usr/bin/env python
"""CoLD generation from the command line: contrastive LoRA decoding on MindSpore.

  python scripts/infer.py --mode graph        # CoLD, shipped 'math' expert, built-in example
  python scripts/infer.py --mode graph --chat --prompt "What is the capital of France?" --beta 0
  python scripts/infer.py --model DIR|FILE.gguf|MF.yaml --adapter math=DIR --alpha 0.1 --beta 0.5 \
      --prompt "Question: ..." [--json]

With no --model the embedded SmolLM2-135M-Instruct is used.
"""
import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("GLOG_v", "3")  # MindSpore's C++ and Python warnings stay off the terminal
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from cold_ms.config import BETA_SCHEDULES  # noqa: E402
from cold_ms.errors import ColdError, InputError  # noqa: E402
from cold_ms.pipeline.options import (add_engine_arguments, apply_defaults, conservative_text,  # noqa: E402
                                     engine_options, kernel_build_note, runs_on)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="HF directory, .gguf file, MindFormers .yaml, converted directory, or an "
                                   "installed model package: smollm2, gemma3 (default: the embedded "
                                   "SmolLM2-135M-Instruct)")
    p.add_argument("--adapter", action="append", default=[], metavar="NAME[=DIR]",
                   help="PEFT LoRA adapter directory, or the name of a shipped adapter; repeatable "
                        "(default with the embedded model: the shipped adapters, expert 'math')")
    p.add_argument("--no-adapter", action="store_true", help="the base model alone, greedy")
    p.add_argument("--expert", help="adapter name of the expert (default: the only adapter)")
    p.add_argument("--amateur", default="base", help="'base' or an adapter name")
    p.add_argument("--amateur-model", help="a separate model as the amateur (any format --model takes; it must "
                                           "share the tokenizer): CoLD against it, in the same decode step")
    p.add_argument("--alpha", type=float, help="plausibility threshold, in (0, 1] (default for --alpha, --beta, "
                                               "--mask, --beta-schedule: the expert's cold_config.json, else "
                                               f"{conservative_text()})")
    p.add_argument("--beta", type=float, help="contrast strength, >= 0 (0 = greedy)")
    p.add_argument("--mask", choices=("logit", "prob"))
    p.add_argument("--beta-schedule", choices=BETA_SCHEDULES,
                   help="fixed, or entropy: beta * H(p_amateur) / (H(p_expert) + H(p_amateur)) at every step")
    p.add_argument("--temperature", type=float, default=0.0, help="0: argmax; > 0: draw over the plausible set")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus of the draw, in (0, 1]")
    p.add_argument("--seed", type=int, default=0, help="of the draws: the same seed gives the same tokens")
    add_engine_arguments(p)
    p.add_argument("--max-new-tokens", type=int, help="default 64; 256 for the built-in example (a worked answer)")
    p.add_argument("--max-len", type=int, help="KV cache length (default: fits the request)")
    p.add_argument("--ignore-eos", action="store_true")
    p.add_argument("--prompt", action="append", default=[], help="text prompt, repeatable")
    p.add_argument("--prompt-ids", action="append", default=[], help="comma-separated ids, repeatable")
    p.add_argument("--chat", action="store_true", help="wrap text prompts in the chat template")
    p.add_argument("--system", help="system message for --chat")
    p.add_argument("--chat-template", help="built-in template (chatml, llama2, gemma) instead of the checkpoint's")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout, nothing else")
    p.add_argument("--input-file", help="batch job: JSON lines {id, prompt|messages, adapter, amateur, "
                                        "alpha, beta, max_tokens}")
    p.add_argument("--output-file", help="batch job results (appended; a rerun skips finished ids)")
    p.add_argument("--slots", type=int, default=4, help="requests decoded together in a batch job")
    return p.parse_args(argv)


def choice_args(args):
    """The Request fields of the choice options (validated with the request)."""
    return {"beta_schedule": args.beta_schedule, "temperature": args.temperature, "top_p": args.top_p,
            "seed": args.seed}


def load(args):
    """Model, adapter registry and the default expert (None: the command line must choose)."""
    from cold_ms.config import ChoiceParams, ColdParams
    from cold_ms.formats.adapters import AdapterRegistry, load_peft_adapter
    from cold_ms.formats.model import load_model
    from cold_ms.formats.shipped import DEFAULT_EXPERT, resolve_adapter, shipped_adapters

    ColdParams(*(0.1 if v is None else v for v in (args.alpha, args.beta)), args.mask or "logit")  # fail early
    ChoiceParams(args.beta_schedule or "fixed", args.temperature, args.top_p, args.seed)
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise InputError("--max-new-tokens must be >= 1")
    if args.no_adapter and (args.adapter or args.expert):
        raise InputError("--no-adapter runs the base model alone: drop --adapter/--expert, or --no-adapter")
    model = load_model(args.model)
    specs = [resolve_adapter(s) for s in args.adapter]
    # The embedded model's built-in example is a math problem and a batch job's lines may name
    # any shipped adapter, as the server's requests do: both get the shipped adapters, 'math'
    # leading. A prompt of the user's own gets no expert unless --adapter names one.
    shipped = (args.model is None and not specs and not args.no_adapter
               and (args.input_file or not (args.prompt or args.prompt_ids)))
    if shipped:
        specs = list(shipped_adapters().items())
    adapters = AdapterRegistry(list(model.builtin_adapters) + [
        load_peft_adapter(path, name, model.config) for name, path in specs])
    return model, adapters, DEFAULT_EXPERT if shipped and DEFAULT_EXPERT in adapters.names else None


def roles(args, adapters, default_expert):
    """(expert, amateur) from the command line, both checked to be loaded; with --amateur-model
    the amateur is that model (against the expert adapter, or the base model itself)."""
    from cold_ms.pipeline.engine import AMATEUR_MODEL
    from cold_ms.pipeline.prompts import choose_roles
    expert, amateur = choose_roles(adapters.names, args.expert or default_expert, args.amateur, args.beta,
                                   args.no_adapter)
    adapters.slot(expert)
    args.settings_from = apply_defaults(args, adapters, expert)
    if args.beta == 0:
        amateur = None
    if amateur is not None and amateur == expert:
        raise InputError(f"--amateur {amateur} is the expert itself: nothing to contrast (give 'base' or "
                         "another adapter, or --beta 0)")
    if args.amateur_model:
        return expert, None if args.beta == 0 else AMATEUR_MODEL
    adapters.slot(amateur)
    return expert, amateur


def amateur_model(args, amateur):
    """The loaded --amateur-model when the run contrasts with it, else None."""
    from cold_ms.formats.model import load_model
    from cold_ms.pipeline.engine import AMATEUR_MODEL
    return load_model(args.amateur_model) if amateur == AMATEUR_MODEL else None


def build(args, log):
    """Load the model and adapters, choose roles, make the prompts and the warmed-up engine."""
    from cold_ms.pipeline.batching import Request
    from cold_ms.pipeline.engine import Engine
    from cold_ms.pipeline.prompts import parse_ids, text_prompt_ids
    from cold_ms.formats.shipped import EXAMPLE_PROBLEM, EXAMPLE_TOKENS, shipped_adapters

    model, adapters, default_expert = load(args)
    expert, amateur = roles(args, adapters, default_expert)
    embedded = args.model is None
    prompts = [text_prompt_ids(model.tokenizer, t, args.chat, args.system, args.chat_template)
               for t in args.prompt] + [parse_ids(raw) for raw in args.prompt_ids]
    if not prompts and embedded:
        log(f"cold_ms: no prompt given; solving the built-in example: {EXAMPLE_PROBLEM}")
        prompts = [text_prompt_ids(model.tokenizer, EXAMPLE_PROBLEM, True, args.system, args.chat_template)]
        args.max_new_tokens = args.max_new_tokens or EXAMPLE_TOKENS
    args.max_new_tokens = args.max_new_tokens or 64
    if not prompts:
        raise InputError("give at least one --prompt or --prompt-ids")
    need = max(len(p) for p in prompts) + args.max_new_tokens
    if need > model.config.max_position_embeddings:
        raise InputError(f"prompt + max_new_tokens = {need} tokens exceeds the model's context "
                         f"of {model.config.max_position_embeddings}")
    max_len = args.max_len or min(model.config.max_position_embeddings, -(-need // 64) * 64)
    engine = Engine(model, adapters, slots=min(len(prompts), 8), max_len=max_len,
                    contrastive=amateur is not None, mask=args.mask, amateur_model=amateur_model(args, amateur),
                    **engine_options(args))
    requests = [Request(p, adapter=expert, amateur=amateur, alpha=args.alpha, beta=args.beta,
                        max_new_tokens=args.max_new_tokens, ignore_eos=args.ignore_eos, **choice_args(args))
                for p in prompts]
    compile_s = engine.warmup(engine.graphs_for(requests))  # only the buckets these prompts step through
    if expert is None and not args.no_adapter:
        shipped = ", ".join(shipped_adapters()) or "none"
        log("cold_ms: no expert adapter chosen, so this run decodes greedily with the base model "
            f"(for CoLD give --adapter NAME=DIR or a shipped expert: {shipped})")
    chosen = (f"CoLD expert={expert} amateur={amateur} alpha={args.alpha} beta={args.beta} "
              f"({args.settings_from})" if amateur
              else f"greedy on {expert or 'the base model'}")
    log(f"cold_ms: {model.config.name} ({model.config.num_params / 1e6:.1f}M params, stored {model.stored}) "
        f"from {model.source}; adapters [{', '.join(adapters.names) or 'none'}]; {chosen}; {runs_on(engine)}; "
        f"loaded in {model.load_s:.1f}s, compiled in {compile_s:.1f}s" + kernel_build_note())
    return model, engine, requests


def generate(engine, requests, tokenizer, quiet):
    """Run the requests; print text as it comes for one prompt, or each result as it completes."""
    from cold_ms.pipeline.engine import Result
    from cold_ms.pipeline.streaming import TextStream
    results = [Result(list(r.prompt_ids), [], "") for r in requests]
    streams = [TextStream(tokenizer) if tokenizer else None for _ in requests]
    for ev in engine.stream(requests):
        res, stream = results[ev.index], streams[ev.index]
        res.token_ids.append(ev.token_id)
        # without a tokenizer the ids themselves are the output, comma-separated as --prompt-ids takes them
        piece = stream.push(ev.token_id) if stream else ("," if len(res.token_ids) > 1 else "") + str(ev.token_id)
        if not quiet and len(requests) == 1:
            print(piece, end="", flush=True)
        if ev.finish_reason:
            res.finish_reason = ev.finish_reason
            if not quiet:
                text = stream.sent if stream else ",".join(map(str, res.token_ids))
                print("\n" if len(requests) == 1 else f"[{ev.index}] {text}\n", end="", flush=True)
    return results


def batch_roles(args, adapters, default_expert, todo):
    """(expert, amateur) of the lines that name none. With several adapters and no --expert,
    the job runs as long as every line names its adapter."""
    if args.expert or args.no_adapter or default_expert or len(adapters.names) < 2:
        return roles(args, adapters, default_expert)
    unnamed = [job["id"] for job in todo if "adapter" not in job]
    if unnamed:
        raise InputError(f"several adapters loaded ({', '.join(adapters.names)}) and {len(unnamed)} lines name none "
                         f"(the first: id {unnamed[0]!r}): give --expert, or an 'adapter' on every line")
    adapters.slot(args.amateur)
    return None, args.amateur


def run_job(args, log, jobs, todo, stop, out):
    """Load, plan and run the lines of `todo` into `out`; returns (completed, failed) of this run."""
    from tqdm import tqdm
    from cold_ms.pipeline.batch_job import plan, run_batch
    from cold_ms.pipeline.batching import Request
    from cold_ms.pipeline.engine import Engine
    model, adapters, default_expert = load(args)
    given = {k: getattr(args, k) for k in ("alpha", "beta", "beta_schedule")}  # unset: each line's adapter's own
    expert, amateur = batch_roles(args, adapters, default_expert, todo)
    args.mask = args.mask or "logit"  # one per engine: the default expert's, else the conservative one
    defaults = {"adapter": expert, "amateur": amateur or args.amateur, "max_tokens": args.max_new_tokens or 64,
                "ignore_eos": args.ignore_eos, **choice_args(args), **given}
    lines = plan(todo, model.tokenizer, defaults, args.chat_template)
    requests = [req for _, req in lines if isinstance(req, Request)]
    engine = None
    if requests:  # lines that all failed to plan need no engine
        need = max(len(r.prompt_ids) + r.max_new_tokens for r in requests)
        max_len = min(model.config.max_position_embeddings, -(-need // 64) * 64)
        engine = Engine(model, adapters, slots=args.slots, max_len=max_len,
                        contrastive=any(r.amateur is not None for r in requests),
                        amateur_model=amateur_model(args, amateur or args.amateur),
                        mask=args.mask, **engine_options(args))
    log(f"cold_ms: batch job {args.input_file}: {len(jobs)} lines, {len(jobs) - len(todo)} already done in "
        f"{args.output_file}; adapters [{', '.join(adapters.names) or 'none'}]"
        + (f"; {runs_on(engine)}" if engine else ""))
    with tqdm(total=len(jobs), initial=len(jobs) - len(todo), unit="req", file=sys.stderr) as bar:
        return run_batch(engine, model.tokenizer, lines, out, bar, stop)


def batch_job(args, log, stop):
    """--input-file: run every line without a result in --output-file, appending results as they
    finish. Exit code 0 when every line has a result, 1 when some failed (a rerun retries them),
    130 when interrupted (a rerun continues)."""
    from cold_ms.distributed import barrier, finish, world
    from cold_ms.pipeline.batch_job import read_jobs
    from cold_ms.pipeline.jsonl import read_done
    from cold_ms.pipeline.shards import finished_ids, merge, part_path
    if not args.output_file:
        raise InputError("--input-file needs --output-file")
    ranks = world()  # under msrun: this worker's share of the lines, into its own part file
    all_jobs = read_jobs(args.input_file)
    if os.path.exists(args.output_file) and os.path.samefile(args.input_file, args.output_file):
        raise InputError("--output-file must not be the --input-file")
    jobs, out = ranks.share(all_jobs), part_path(args.output_file, ranks)
    done = finished_ids(args.output_file)
    todo = [j for j in jobs if j["id"] not in done]
    try:
        completed, failed = run_job(args, log, jobs, todo, stop, out)
    except KeyboardInterrupt:
        stop.requested = True
    if ranks.size > 1 and not stop.requested:
        barrier()  # every part complete: rank 0 merges them into the output file
        if ranks.rank == 0:
            log(f"cold_ms: merged {merge(args.output_file, [j['id'] for j in all_jobs])} rows into {args.output_file}")
        finish()
    if stop.requested:
        rows = read_done(out)
        have = sum(j["id"] in rows for j in jobs)
        errors = sum("error" in rows.get(j["id"], {}) for j in jobs)
        log(f"cold_ms: interrupted: {have - len(done)} results written by this run; {args.output_file} holds "
            f"{have} of {len(jobs)} lines ({errors} errors); rerun the same command to run the other "
            f"{len(jobs) - have + errors}")
        return 130
    log(f"cold_ms: {completed} completed, {failed} failed"
        + (f" (their rows in {args.output_file} have an 'error' field; a rerun retries them)" if failed else ""))
    return 1 if failed else 0


def run_prompts(args, log):
    """--prompt/--prompt-ids (or the built-in example): generate, print, report the timing."""
    model, engine, requests = build(args, log)
    start = time.perf_counter()
    results = generate(engine, requests, model.tokenizer, args.json)
    wall = time.perf_counter() - start
    steps = engine.stats["decode_ms"]
    tokens = sum(len(r.token_ids) for r in results)
    timing = {"load_s": round(model.load_s, 3), "compile_s": round(sum(engine.stats["compile_s"].values()), 3),
              "prefill_s": round(engine.stats["prefill_s"], 3),
              "decode_ms_median": round(statistics.median(steps), 3) if steps else None,
              "generated_tokens": tokens, "wall_s": round(wall, 3)}
    if args.json:
        tok = model.tokenizer
        out = [{"prompt_ids": r.prompt_ids, "token_ids": r.token_ids,
                "text": tok.decode(r.token_ids) if tok else None, "finish_reason": r.finish_reason}
               for r in results]
        print(json.dumps({"outputs": out, "timing": timing}))
    log(f"cold_ms: {tokens} tokens in {wall:.2f}s ({tokens / wall:.1f} tokens/s; decode median "
        f"{timing['decode_ms_median']} ms/step)")
    return 0


def main(argv=None):
    from cold_ms.pipeline.batch_job import StopOnSignal
    args = parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    try:
        with StopOnSignal() as stop:
            return batch_job(args, log, stop) if args.input_file else run_prompts(args, log)
    except ColdError as e:
        log(f"error: {e}")
        return 2
    except KeyboardInterrupt:
        log("cold_ms: interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
