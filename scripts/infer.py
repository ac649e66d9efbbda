#!/usr/bin/env python
"""CoLD generation from the command line: contrastive LoRA decoding on MindSpore.

  python scripts/infer.py --mode graph --model DIR --adapter math=DIR --alpha 0.1 --beta 0.5 \
      --prompt "Question: ..." [--json]
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


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=("graph", "pynative"), default="graph")
    p.add_argument("--model", required=True, help="HF LLaMA model directory")
    p.add_argument("--adapter", action="append", default=[], metavar="NAME=DIR",
                   help="PEFT LoRA adapter directory, repeatable")
    p.add_argument("--expert", help="adapter name of the expert (default: the only adapter)")
    p.add_argument("--amateur", default="base", help="'base' or an adapter name")
    p.add_argument("--alpha", type=float, default=0.1, help="plausibility threshold, in (0, 1]")
    p.add_argument("--beta", type=float, default=0.5, help="contrast strength, >= 0 (0 = greedy)")
    p.add_argument("--mask", choices=("logit", "prob"), default="logit")
    p.add_argument("--lora-backend", choices=("custom", "gather"), default="custom",
                   help="BGMV kernel (custom) or the plain gather-BMM twin")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--max-len", type=int, help="KV cache length (default: fits the request)")
    p.add_argument("--ignore-eos", action="store_true")
    p.add_argument("--prompt", action="append", default=[], help="text prompt, repeatable")
    p.add_argument("--prompt-ids", action="append", default=[], help="comma-separated ids, repeatable")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout, nothing else")
    return p.parse_args(argv)


def prompt_ids(args, tokenizer):
    prompts = []
    for text in args.prompt:
        if tokenizer is None:
            raise InputError("this model ships no tokenizer: use --prompt-ids")
        if not text.strip():
            raise InputError("empty prompt")
        prompts.append(tokenizer.encode(text))
    for raw in args.prompt_ids:
        try:
            prompts.append([int(x) for x in raw.split(",") if x.strip()])
        except ValueError:
            raise InputError(f"--prompt-ids must be comma-separated integers, got {raw!r}") from None
    if not prompts:
        raise InputError("give at least one --prompt or --prompt-ids")
    return prompts


def parse_adapters(specs):
    pairs = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--adapter expects NAME=DIR, got {spec!r}")
        pairs.append((name, path))
    return pairs


def choose_roles(args, names):
    """(expert, amateur) adapter names; amateur None means plain greedy."""
    if args.expert is None and len(names) > 1:
        raise InputError(f"several adapters loaded ({', '.join(names)}): choose one with --expert")
    expert = args.expert or (names[0] if names else None)
    amateur = None if (expert is None or args.beta == 0) else args.amateur
    return expert, amateur


def run(args, log):
    from cold_ms.pipeline.adapters import AdapterRegistry, load_peft_adapter
    from cold_ms.pipeline.batching import Request
    from cold_ms.pipeline.engine import Engine
    from cold_ms.pipeline.model import load_model
    from cold_ms.config import ColdParams

    ColdParams(args.alpha, args.beta, args.mask)
    model = load_model(args.model)
    adapters = AdapterRegistry([load_peft_adapter(path, name, model.config)
                                for name, path in parse_adapters(args.adapter)])
    expert, amateur = choose_roles(args, adapters.names)
    adapters.slot(expert), adapters.slot(amateur)
    prompts = prompt_ids(args, model.tokenizer)
    need = max(len(p) for p in prompts) + args.max_new_tokens
    max_len = args.max_len or min(model.config.max_position_embeddings, -(-need // 64) * 64)
    if need > model.config.max_position_embeddings:
        raise InputError(f"prompt + max_new_tokens = {need} tokens exceeds the model's context "
                         f"of {model.config.max_position_embeddings}")
    engine = Engine(model, adapters, slots=min(len(prompts), 8), max_len=max_len,
                    contrastive=amateur is not None, mode=args.mode, mask=args.mask,
                    lora_backend=args.lora_backend)
    what = f"CoLD expert={expert} amateur={amateur} alpha={args.alpha} beta={args.beta}" \
        if amateur else f"greedy on {expert or 'the base model'}"
    log(f"cold_ms: {model.config.name} ({model.config.num_params / 1e6:.1f}M params, fp32), "
        f"adapters [{', '.join(adapters.names) or 'none'}], {what}, {args.mode} mode, "
        f"LoRA backend {engine.lora_backend}; "
        f"loaded in {model.load_s:.1f}s")
    requests = [Request(p, adapter=expert, amateur=amateur, alpha=args.alpha, beta=args.beta,
                        max_new_tokens=args.max_new_tokens, ignore_eos=args.ignore_eos)
                for p in prompts]
    return model, engine, requests


def main(argv=None):
    args = parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    try:
        model, engine, requests = run(args, log)
        start = time.perf_counter()
        results = stream_or_collect(engine, requests, model.tokenizer, args.json)
        wall = time.perf_counter() - start
    except ColdError as e:
        log(f"error: {e}")
        return 2
    tok = model.tokenizer
    steps = engine.stats["decode_ms"][1:] or engine.stats["decode_ms"]
    timing = {"load_s": round(model.load_s, 3),
              "compile_s": round(sum(engine.stats["compile_s"].values()), 3),
              "prefill_s": round(engine.stats["prefill_s"], 3),
              "decode_ms_median": round(statistics.median(steps), 3) if steps else None,
              "generated_tokens": sum(len(r.token_ids) for r in results),
              "wall_s": round(wall, 3)}
    if args.json:
        out = [{"prompt_ids": r.prompt_ids, "token_ids": r.token_ids,
                "text": tok.decode(r.token_ids) if tok else None,
                "finish_reason": r.finish_reason} for r in results]
        print(json.dumps({"outputs": out, "timing": timing}))
    log(f"cold_ms: {timing['generated_tokens']} tokens in {wall:.2f}s (compile {timing['compile_s']}s, "
        f"decode median {timing['decode_ms_median']} ms/step)")
    return 0


def stream_or_collect(engine, requests, tokenizer, quiet):
    """Generate; print text as it comes for one prompt, or each result as it completes."""
    from cold_ms.pipeline.streaming import TextStream
    results = [None] * len(requests)
    streams = [TextStream(tokenizer) if tokenizer else None for _ in requests]
    ids = [[] for _ in requests]
    for ev in engine.stream(requests):
        ids[ev.index].append(ev.token_id)
        piece = streams[ev.index].push(ev.token_id) if streams[ev.index] else ""
        if not quiet and len(requests) == 1 and piece:
            print(piece, end="", flush=True)
        if ev.finish_reason:
            from cold_ms.pipeline.engine import Result
            results[ev.index] = Result(list(requests[ev.index].prompt_ids), ids[ev.index], ev.finish_reason)
            if not quiet:
                text = streams[ev.index].sent if streams[ev.index] else ",".join(map(str, ids[ev.index]))
                print(("\n" if len(requests) == 1 else f"[{ev.index}] {text}\n"), end="", flush=True)
    return results


if __name__ == "__main__":
    sys.exit(main())
