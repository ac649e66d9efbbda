"""Build the server's engine: model, every adapter of the adapter directory, warm graphs."""
import gc
import logging
import os

from cold_ms.errors import ConfigError
from cold_ms.formats.adapter_slots import AdapterSlots
from cold_ms.formats.adapters import AdapterRegistry, load_peft_adapter
from cold_ms.pipeline.engine import Engine
from cold_ms.pipeline.options import engine_options, runs_on
from cold_ms.formats.model import load_model
from cold_ms.formats.shipped import SHIPPED_DIR

log = logging.getLogger("cold_ms.serve")


def adapter_dirs(root):
    """{name: path} of the adapters in `root` (sub-directories holding adapter_config.json)."""
    if not os.path.isdir(root):
        raise ConfigError(f"adapter directory not found: {root}")
    return {n: os.path.join(root, n) for n in sorted(os.listdir(root))
            if os.path.isfile(os.path.join(root, n, "adapter_config.json"))}


def build_engine(args):
    """(LoadedModel, Engine) for scripts/serve.py's arguments, graphs compiled."""
    model = load_model(args.model)
    root = args.adapters_dir or (SHIPPED_DIR if args.model is None else None)
    dirs = adapter_dirs(root) if root else {}
    loaded = list(model.builtin_adapters) + [load_peft_adapter(p, n, model.config) for n, p in dirs.items()]
    # arguments a caller may lack (deploy/modelarts builds its own): runtime adapters off, default budget
    runtime = getattr(args, "allow_runtime_adapters", False)
    adapters = runtime_slots(args, model, loaded, dirs) if runtime else AdapterRegistry(loaded)
    if args.max_len > model.config.max_position_embeddings:
        raise ConfigError(f"--max-len {args.max_len} exceeds the model's context "
                          f"{model.config.max_position_embeddings}")
    engine = Engine(model, adapters, slots=args.slots, max_len=args.max_len, contrastive=True,
                    max_step_tokens=getattr(args, "max_step_tokens", None), **engine_options(args))
    seconds = engine.warmup()
    # The model, adapters and graphs (~190k Python objects) leave the collector's generations: a
    # full collection then scans only what requests create; it scanned them all in 96 ms (embedded
    # model, 8 slots), a stall of every running request every few hundred steps (ITL p99).
    gc.collect()
    gc.freeze()
    log.info("ready: %s (%.1fM params, stored %s), adapters [%s], %d slots, max_len %d, %d rows a step; %s; "
             "%d graphs compiled in %.1fs", model.config.name, model.config.num_params / 1e6, model.stored,
             ", ".join(adapters.names), args.slots, args.max_len, engine.max_step_tokens, runs_on(engine),
             len(engine.graphs()), seconds)
    return model, engine


def runtime_slots(args, model, loaded, dirs):
    """AdapterSlots sized by --max-loras/--max-cpu-loras/--max-lora-rank holding the start-up adapters
    (the built-in ones have no directory: they stay in host memory)."""
    max_loras = args.max_loras or max(1, len(loaded))
    slots = AdapterSlots(model.config, max_loras, args.max_cpu_loras or max(max_loras, len(loaded)),
                         args.max_lora_rank or max([16] + [a.rank for a in loaded]))
    for adapter in loaded:
        slots.add(adapter, dirs.get(adapter.name))
    return slots
