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

from cold_ms.errors import ColdError, InputError  # noqa: E402
from cold_ms.pipeline.options import add_engine_arguments, engine_options, runs_on  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="HF directory, .gguf file, MindFormers .yaml or converted directory "
                                   "(default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--adapter", action="append", default=[], metavar="NAME[=DIR]",
                   help="PEFT LoRA adapter directory, or the name of a shipped adapter; repeatable "
                        "(default with the embedded model: the shipped adapters, expert 'math')")
    p.add_argument("--no-adapter", action="store_true", help="the base model alone, greedy")
    p.add_argument("--expert", help="adapter name of the expert (default: the only adapter)")
    p.add_argument("--amateur", default="base", help="'base' or an adapter name")
    p.add_argument("--alpha", type=float, default=0.1, help="plausibility threshold, in (0, 1]")
    p.add_argument("--beta", type=float, default=0.5, help="contrast strength, >= 0 (0 = greedy)")
    p.add_argument("--mask", choices=("logit", "prob"), default="logit")
    add_engine_arguments(p)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--max-len", type=int, help="KV cache length (default: fits the request)")
    p.add_argument("--ignore-eos", action="store_true")
    p.add_argument("--prompt", action="append", default=[], help="text prompt, repeatable")
    p.add_argument("--prompt-ids", action="append", default=[], help="comma-separated ids, repeatable")
    p.add_argument("--chat", action="store_true", help="wrap text prompts in the chat template")
    p.add_argument("--system", help="system message for --chat")
    p.add_argument("--chat-template", help="built-in template (chatml, llama2) instead of the checkpoint's")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout, nothing else")
    p.add_argument("--input-file", help="batch job: JSON lines {id, prompt|messages, adapter, amateur, "
                                        "alpha, beta, max_tokens}")
    p.add_argument("--output-file", help="batch job results (appended; a rerun skips finished ids)")
    p.add_argument("--slots", type=int, default=4, help="requests decoded together in a batch job")
    return p.parse_args(argv)


def load(args):
    """Model, adapter registry and (expert, amateur) for the command line."""
    from cold_ms.config import ColdParams
    from cold_ms.formats.adapters import AdapterRegistry, load_peft_adapter
    from cold_ms.formats.model import load_model
    from cold_ms.pipeline.prompts import choose_roles
    from cold_ms.formats.shipped import DEFAULT_EXPERT, resolve_adapter, shipped_adapters

    ColdParams(args.alpha, args.beta, args.mask)
    if args.max_new_tokens < 1:
        raise InputError("--max-new-tokens must be >= 1")
    model = load_model(args.model)
    embedded = args.model is None
    specs = [resolve_adapter(s) for s in args.adapter]
    builtin_example = not (args.prompt or args.prompt_ids or args.input_file)
    if embedded and not specs and not args.no_adapter and builtin_example:
        # the built-in example is a math problem: CoLD with the shipped experts, 'math' leading.
        # A prompt of the user's own gets no expert unless --adapter names one.
        specs = list(shipped_adapters().items())
    adapters = AdapterRegistry(list(model.builtin_adapters) + [
        load_peft_adapter(path, name, model.config) for name, path in specs])
    default_expert = DEFAULT_EXPERT if embedded and not args.adapter and DEFAULT_EXPERT in adapters.names else None
    expert, amateur = choose_roles(adapters.names, args.expert or default_expert, args.amateur, args.beta,
                                   args.no_adapter)
    adapters.slot(expert), adapters.slot(amateur)
    return model, adapters, expert, amateur


def build(args, log):
    """Load the model and adapters, choose roles, make the prompts and the warmed-up engine."""
    from cold_ms.pipeline.batching import Request
    from cold_ms.pipeline.engine import Engine
    from cold_ms.pipeline.prompts import parse_ids, text_prompt_ids
    from cold_ms.formats.shipped import EXAMPLE_PROBLEM, shipped_adapters

    model, adapters, expert, amateur = load(args)
    embedded = args.model is None
    prompts = [text_prompt_ids(model.tokenizer, t, args.chat, args.system, args.chat_template)
               for t in args.prompt] + [parse_ids(raw) for raw in args.prompt_ids]
    if not prompts and embedded:
        log(f"cold_ms: no prompt given; solving the built-in example: {EXAMPLE_PROBLEM}")
        prompts = [text_prompt_ids(model.tokenizer, EXAMPLE_PROBLEM, True, args.system, args.chat_template)]
    if not prompts:
        raise InputError("give at least one --prompt or --prompt-ids")
    need = max(len(p) for p in prompts) + args.max_new_tokens
    if need > model.config.max_position_embeddings:
        raise InputError(f"prompt + max_new_tokens = {need} tokens exceeds the model's context "
                         f"of {model.config.max_position_embeddings}")
    max_len = args.max_len or min(model.config.max_position_embeddings, -(-need // 64) * 64)
    engine = Engine(model, adapters, slots=min(len(prompts), 8), max_len=max_len,
                    contrastive=amateur is not None, mask=args.mask, **engine_options(args))
    compile_s = engine.warmup(max(len(p) for p in prompts))
    if expert is None and not args.no_adapter:
        shipped = ", ".join(shipped_adapters()) or "none"
        log("cold_ms: no expert adapter chosen, so this run decodes greedily with the base model "
            f"(for CoLD give --adapter NAME=DIR or a shipped expert: {shipped})")
    roles = (f"CoLD expert={expert} amateur={amateur} alpha={args.alpha} beta={args.beta}" if amateur
             else f"greedy on {expert or 'the base model'}")
    log(f"cold_ms: {model.config.name} ({model.config.num_params / 1e6:.1f}M params, stored {model.stored}) "
        f"from {model.source}; adapters [{', '.join(adapters.names) or 'none'}]; {roles}; {runs_on(engine)}; "
        f"loaded in {model.load_s:.1f}s, compiled in {compile_s:.1f}s")
    requests = [Request(p, adapter=expert, amateur=amateur, alpha=args.alpha, beta=args.beta,
                        max_new_tokens=args.max_new_tokens, ignore_eos=args.ignore_eos) for p in prompts]
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
        piece = stream.push(ev.token_id) if stream else ""
        if not quiet and len(requests) == 1:
            print(piece, end="", flush=True)
        if ev.finish_reason:
            res.finish_reason = ev.finish_reason
            if not quiet:
                text = stream.sent if stream else ",".join(map(str, res.token_ids))
                print("\n" if len(requests) == 1 else f"[{ev.index}] {text}\n", end="", flush=True)
    return results


def batch_job(args, log):
    """--input-file: run every line not yet in --output-file, appending results as they finish."""
    from tqdm import tqdm
    from cold_ms.pipeline.batch_job import job_request, read_jobs, run_batch
    from cold_ms.pipeline.engine import Engine
    from cold_ms.pipeline.jsonl import read_done
    if not args.output_file:
        raise InputError("--input-file needs --output-file")
    model, adapters, expert, amateur = load(args)
    jobs = read_jobs(args.input_file)
    defaults = {"adapter": expert, "amateur": amateur or args.amateur, "alpha": args.alpha, "beta": args.beta,
                "max_tokens": args.max_new_tokens}
    done = read_done(args.output_file)
    todo = [j for j in jobs if j["id"] not in done]
    sizes, contrastive = [0], False
    for job in todo:
        try:
            req = job_request(job, model.tokenizer, defaults, args.chat_template)
        except (ColdError, ValueError, TypeError, KeyError):
            continue  # run_batch writes its error line
        sizes.append(len(req.prompt_ids) + req.max_new_tokens)
        contrastive = contrastive or req.amateur is not None
    max_len = min(model.config.max_position_embeddings, -(-max(sizes) // 64) * 64 or 64)
    engine = Engine(model, adapters, slots=args.slots, max_len=max_len, contrastive=contrastive,
                    mask=args.mask, **engine_options(args))
    log(f"cold_ms: batch job {args.input_file}: {len(jobs)} lines, {len(done)} already in {args.output_file}; "
        f"{runs_on(engine)}")
    with tqdm(total=len(jobs), initial=len(jobs) - len(todo), unit="req", file=sys.stderr) as bar:
        completed, failed = run_batch(engine, model.tokenizer, todo, args.output_file, defaults,
                                      args.chat_template, bar)
    log(f"cold_ms: {completed} completed, {failed} failed (see their 'error' field)")
    return 0


def main(argv=None):
    args = parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    if args.input_file:
        try:
            return batch_job(args, log)
        except ColdError as e:
            log(f"error: {e}")
            return 2
    try:
        model, engine, requests = build(args, log)
        start = time.perf_counter()
        results = generate(engine, requests, model.tokenizer, args.json)
        wall = time.perf_counter() - start
    except ColdError as e:
        log(f"error: {e}")
        return 2
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


if __name__ == "__main__":
    sys.exit(main())
