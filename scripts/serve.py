#!/usr/bin/env python
"""Serve CoLD over HTTP: OpenAI-compatible completions/chat with per-request adapter,
amateur, alpha and beta; continuous batching over --slots decode slots.

  python scripts/serve.py                              # embedded model + shipped adapters, 127.0.0.1:8000
  python scripts/serve.py --host 0.0.0.0 --port 8080   # ModelArts
"""
import argparse
import logging
import os
import sys

os.environ.setdefault("GLOG_v", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from cold_ms.pipeline.options import add_engine_arguments  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="base model (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--adapters-dir", help="directory of PEFT adapters, one per sub-directory, served by "
                                          "their directory names (default: the shipped adapters)")
    p.add_argument("--slots", type=int, default=4, help="requests decoded together")
    p.add_argument("--max-step-tokens", type=int,
                   help="token rows per engine step, decode rows included (default: 128, at least 2 x slots): a "
                        "joining prompt is written in chunks of what decoding leaves, so running requests wait "
                        "at most one such step per token")
    p.add_argument("--allow-runtime-adapters", action="store_true",
                   help="enable POST /v1/load_lora_adapter and /v1/unload_lora_adapter (paths inside "
                        "--adapters-dir only)")
    p.add_argument("--max-loras", type=int,
                   help="with --allow-runtime-adapters: adapters resident in the engine's LoRA slots "
                        "(default: those in --adapters-dir, at least 1)")
    p.add_argument("--max-cpu-loras", type=int,
                   help="with --allow-runtime-adapters: adapters kept in host memory, the least recently used "
                        "idle one dropped past it (default: --max-loras or those loaded at start)")
    p.add_argument("--max-lora-rank", type=int,
                   help="with --allow-runtime-adapters: the largest rank an adapter may have (default: 16 or "
                        "the largest at start)")
    add_engine_arguments(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-len", type=int, default=1024, help="KV cache length per slot (prompt + completion)")
    p.add_argument("--max-tokens-limit", type=int, default=512)
    p.add_argument("--max-queue", type=int, default=64, help="waiting requests before 429")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20)
    p.add_argument("--default-alpha", type=float, help="alpha of requests that give none (default: the "
                                                       "adapter's cold_config.json, else 0.1)")
    p.add_argument("--default-beta", type=float, help="beta of requests that give none (default: the "
                                                      "adapter's cold_config.json, else 0.1)")
    p.add_argument("--chat-template", help="built-in chat template instead of the checkpoint's")
    p.add_argument("--api-key", default=os.environ.get("COLD_MS_API_KEY"),
                   help="require 'Authorization: Bearer KEY' (default: $COLD_MS_API_KEY, if set)")
    return p.parse_args(argv)


def check(args):
    """Refuse bad settings before anything loads (ColdError)."""
    from cold_ms.config import ColdParams
    from cold_ms.errors import ConfigError
    try:
        ColdParams(*(0.1 if v is None else v for v in (args.default_alpha, args.default_beta)))
    except ConfigError as e:
        raise ConfigError(f"--default-alpha/--default-beta: {e}") from None
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be in 1..65535, got {args.port}")
    for flag in ("slots", "max_len", "max_tokens_limit", "max_queue", "max_body_bytes", "max_step_tokens",
                 "max_loras", "max_cpu_loras", "max_lora_rank"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    runtime = [f for f in ("max_loras", "max_cpu_loras", "max_lora_rank") if getattr(args, f) is not None]
    if runtime and not args.allow_runtime_adapters:
        raise ConfigError(f"--{runtime[0].replace('_', '-')} sizes the runtime adapter slots: "
                          f"it needs --allow-runtime-adapters")
    if args.max_loras and args.max_cpu_loras and args.max_cpu_loras < args.max_loras:
        raise ConfigError(f"--max-cpu-loras {args.max_cpu_loras} is below --max-loras {args.max_loras}: host "
                          f"memory holds every adapter resident in a slot")
    if args.allow_runtime_adapters and not args.adapters_dir:
        raise ConfigError("--allow-runtime-adapters needs --adapters-dir: adapters load from inside it only")


def one_line(error):
    """An exception as one line: ours carry a message for the user; others are named too."""
    from cold_ms.errors import ColdError
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return first if isinstance(error, ColdError) else f"{type(error).__name__}: {first}"


def main(argv=None):
    args = parse_args(argv)
    from cold_ms.errors import ColdError
    try:
        check(args)
    except ColdError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import uvicorn
    from cold_ms.serving.app import ServerConfig, create_app
    from cold_ms.serving.runtime import build_engine
    cfg = ServerConfig(max_body_bytes=args.max_body_bytes, max_tokens_limit=args.max_tokens_limit,
                       max_queue=args.max_queue, default_alpha=args.default_alpha, default_beta=args.default_beta,
                       api_key=args.api_key, chat_template=args.chat_template,
                       runtime_adapters_dir=args.adapters_dir if args.allow_runtime_adapters else None)
    failed = []

    def stop(error):  # the model did not load: an orchestrator should see the process end
        failed.append(error)
        server.should_exit = True
    server = uvicorn.Server(uvicorn.Config(create_app(lambda: build_engine(args), cfg, on_failure=stop),
                                           host=args.host, port=args.port, log_level="warning"))
    server.run()
    if failed:
        print(f"error: {one_line(failed[0])}", file=sys.stderr)
        return 2 if isinstance(failed[0], ColdError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
