"""`bench.py decode`: per-step decode time of greedy vs fused CoLD on a random LLaMA."""
import statistics
import tempfile
import time

import numpy as np

from cold_ms.bench.random_model import write_random_checkpoint
from cold_ms.formats.adapters import AdapterRegistry, load_peft_adapter
from cold_ms.pipeline.batching import Request
from cold_ms.pipeline.engine import Engine
from cold_ms.pipeline.options import add_engine_arguments, engine_options
from cold_ms.formats.model import load_model


def add_arguments(p):
    p.add_argument("--size", default="100m", choices=("100m", "tiny"))
    p.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    p.add_argument("--steps", type=int, default=64)
    add_engine_arguments(p)


def run(args):
    model_dir, adapter_dir = write_random_checkpoint(tempfile.mkdtemp(prefix="cold_bench_"), args.size)
    model = load_model(model_dir)
    adapter = load_peft_adapter(adapter_dir, "lora", model.config)
    reg = AdapterRegistry([adapter])
    print(f"random LLaMA {model.config.num_params / 1e6:.1f}M params, LoRA r=16 on all projections, "
          f"weights {args.weights}, {args.mode} mode, {args.steps} decode steps")
    print(f"{'variant':8} {'B':>3} {'ms/step med':>12} {'p90':>8} {'compile s':>10}")
    prompt = list(np.random.default_rng(0).integers(3, model.config.vocab_size, 24))
    for batch in args.batch:
        for variant in ("greedy", "cold"):
            cold = variant == "cold"
            eng = Engine(model, reg, slots=batch, max_len=128, contrastive=cold, **engine_options(args))
            reqs = [Request(prompt, adapter="lora", amateur="base" if cold else None,
                            max_new_tokens=args.steps + 1, ignore_eos=True) for _ in range(batch)]
            start = time.perf_counter()
            eng.generate(reqs)
            steps = eng.stats["decode_ms"][1:]
            compile_s = sum(eng.stats["compile_s"].values())
            print(f"{variant:8} {batch:>3} {statistics.median(steps):>12.2f} "
                  f"{np.percentile(steps, 90):>8.2f} {compile_s:>10.2f}   (wall {time.perf_counter() - start:.1f}s)")
