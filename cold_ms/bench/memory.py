"""`bench.py memory`: the device bytes our allocation plan needs and the bytes a decode step
reads, for CoLD on one base copy against two full models, from ModelConfig / LoraLayout
arithmetic alone (no weights are allocated, so random:7b needs no 27 GB).

The plan (cold_ms/cells, pipeline/engine.py), every tensor in the compute dtype:
  weights    the base model's parameters (ModelConfig.num_params), once for CoLD, twice for two
             models (the expert merged into one copy, the amateur in the other)
  KV cache   k and v of every layer for 2*S cache rows of max_len positions (CoLD: expert row s
             and amateur row S + s; two models: S rows each)
  adapters   CoLD only: K stacked slots of rank R, A (R, in) and B (R, out) per target and layer
  workspace  one decode step's largest live activations over 2*S token rows: float32 logits
             (V per row, CoLD scores them in float32), float32 attention scores over max_len,
             the MLP's gate and up, the residual with q, k, v (an estimate: the allocator's
             fragmentation and the framework's own buffers are not counted)
Bytes read per decode step, at the last position (context = max_len, the worst case: attention
reads the cache only up to the live positions on Ascend, cells/attention.py): every weight but the
embedding table (of which 2*S rows are gathered; a tied table is the head and is read whole),
the whole KV cache, and the adapters in use (at most min(K, 2*S), every row its own).
"""
import json
import os
from dataclasses import dataclass

from cold_ms.bench.random_model import SIZES
from cold_ms.config import LORA_TARGETS, LoraLayout, ModelConfig
from cold_ms.formats.names import module_dims

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
# The paper's measured memory for LLaMA-2-7B in 16 bits: CoLD on one base copy vs two models.
PAPER_GB = {"cold": 14.28, "two_models": 28.0}
# Atlas 800T A2 HBM bandwidth: no figure was found in Huawei's documentation searched for this
# command (product pages, CANN profiling docs), so none is built in; pass --hbm-gbps with the
# figure your hardware documentation gives to print the ms/step floor.
PARTS = ("weights", "kv_cache", "adapters", "workspace")


@dataclass(frozen=True)
class Plan:
    """Bytes of each part of one deployment, and the bytes one decode step reads."""
    weights: int
    kv_cache: int
    adapters: int
    workspace: int
    read_per_step: int

    @property
    def total(self):
        return sum(getattr(self, p) for p in PARTS)


def adapter_elements(cfg, layout):
    """Elements of one adapter slot: A (R, in) and B (R, out) per target and layer."""
    return cfg.num_layers * sum(layout.rank * sum(module_dims(cfg, m)) for m in layout.targets)


def plans(cfg, layout, slots, max_len):
    """{"cold": Plan, "two_models": Plan} for S = slots requests of up to max_len tokens."""
    b = DTYPE_BYTES[layout.dtype]
    rows = 2 * slots
    weights = cfg.num_params * b
    kv = 2 * cfg.num_layers * rows * cfg.num_kv_heads * max_len * cfg.head_dim * b
    adapters = layout.num_slots * adapter_elements(cfg, layout) * b
    qkv = (cfg.num_heads + 2 * cfg.num_kv_heads) * cfg.head_dim
    workspace = rows * (4 * cfg.vocab_size + 4 * cfg.num_heads * max_len
                        + b * 2 * cfg.intermediate_size + b * (cfg.hidden_size + qkv))
    table = 0 if cfg.tie_word_embeddings else cfg.vocab_size * cfg.hidden_size
    streamed = (cfg.num_params - table) * b  # every weight but the gathered embedding rows
    gathered = rows * cfg.hidden_size * b
    in_use = min(layout.num_slots, rows) * adapter_elements(cfg, layout) * b
    return {"cold": Plan(weights, kv, adapters, workspace, streamed + gathered + kv + in_use),
            "two_models": Plan(2 * weights, kv, 0, workspace, 2 * streamed + gathered + kv)}


def model_config(spec):
    """ModelConfig of random:SIZE (bench's shapes) or of a directory's HF config.json."""
    if spec.startswith("random:"):
        size = spec.split(":", 1)[1]
        if size not in SIZES:
            raise SystemExit(f"--model random:SIZE: SIZE must be one of {', '.join(SIZES)}, got {size!r}")
        return ModelConfig.from_hf(dict(SIZES[size]))
    path = os.path.join(spec, "config.json")
    if not os.path.isfile(path):
        raise SystemExit(f"--model: {spec!r} is neither random:SIZE nor a directory with a config.json")
    with open(path, encoding="utf-8") as f:
        return ModelConfig.from_hf(json.load(f), where=path)


def add_arguments(p):
    p.add_argument("--model", default="random:7b", help="random:SIZE or a model directory (its config.json only)")
    p.add_argument("--dtype", default="bfloat16", choices=tuple(DTYPE_BYTES))
    p.add_argument("--slots", type=int, default=1, help="concurrent requests S (CoLD: 2*S cache rows)")
    p.add_argument("--max-len", type=int, default=4096)
    p.add_argument("--adapters", type=int, default=2, help="stacked LoRA slots K")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--targets", nargs="+", default=list(LORA_TARGETS), choices=LORA_TARGETS)
    p.add_argument("--hbm-gbps", type=float, default=0.0,
                   help="device memory bandwidth in GB/s for the ms/step floor (none documented was found "
                        "for the Atlas 800T A2; 0: not printed)")
    p.add_argument("--json", action="store_true")


def _check(args):
    for name in ("slots", "max_len", "adapters", "rank"):
        if getattr(args, name) < (0 if name == "adapters" else 1):
            raise SystemExit(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.hbm_gbps < 0:
        raise SystemExit(f"--hbm-gbps must be >= 0, got {args.hbm_gbps}")


def run(args):
    _check(args)
    cfg = model_config(args.model)
    layout = LoraLayout(args.adapters, args.rank, tuple(args.targets), args.dtype)
    result = plans(cfg, layout, args.slots, args.max_len)
    if args.json:
        print(json.dumps({k: {**p.__dict__, "total": p.total} for k, p in result.items()}))
        return
    print(f"{args.model}: {cfg.num_params / 1e9:.2f}B parameters, {args.dtype}, S={args.slots} slots, "
          f"max_len {args.max_len}, K={args.adapters} adapters of rank {args.rank} on {len(args.targets)} targets")
    print(f"{'GB (1e9 bytes)':24} {'CoLD, one base':>15} {'two models':>12}")
    for part in PARTS + ("total",):
        print(f"{part:24} {getattr(result['cold'], part) / 1e9:15.3f} {getattr(result['two_models'], part) / 1e9:12.3f}")
    print(f"{'paper (LLaMA-2-7B, 16-bit)':24} {PAPER_GB['cold']:15.2f} {PAPER_GB['two_models']:12.2f}")
    print(f"{'read per step at max_len':24} {result['cold'].read_per_step / 1e9:15.3f} "
          f"{result['two_models'].read_per_step / 1e9:12.3f}")
    if args.hbm_gbps:
        floor = {k: p.read_per_step / (args.hbm_gbps * 1e9) * 1e3 for k, p in result.items()}
        print(f"{'ms/step floor':24} {floor['cold']:15.2f} {floor['two_models']:12.2f}   "
              f"(bytes read / {args.hbm_gbps:g} GB/s; a bound, not a measurement)")
    else:
        print("ms/step floor: not printed: no HBM bandwidth of the Atlas 800T A2 was found in Huawei's "
              "documentation; pass --hbm-gbps with your hardware's documented figure")
