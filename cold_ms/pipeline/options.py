"""The engine options every entry point offers (infer.py, serve.py, eval.py, bench.py), declared
once, and the one-line summary each prints of what it runs."""
from cold_ms.config import FLOAT_DTYPES
from cold_ms.ops.prepare import ACTIVATIONS
from cold_ms.runtime import device
from cold_ms.wtypes import CHOICES


DEFAULTS = {"mode": "graph", "weights": "auto", "activations": "int16", "lora_backend": "custom", "dtype": "float32",
            "kv_dtype": "float32"}


def add_engine_arguments(p, modes=True):
    """--weights, --activations, --lora-backend, --dtype, --kv-dtype (and --mode)."""
    if modes:
        p.add_argument("--mode", choices=("graph", "pynative"), default=DEFAULTS["mode"],
                       help="graph: compiled (the product); pynative: op by op, for debugging")
    p.add_argument("--weights", choices=list(CHOICES), default=DEFAULTS["weights"],
                   help="what the engine reads the checkpoint's matrices as: auto keeps the stored type "
                        "where a kernel reads it (a GGUF stays quantised), native insists on it, the others "
                        "convert (q8_0 requantises)")
    p.add_argument("--activations", choices=list(ACTIVATIONS), default=DEFAULTS["activations"],
                   help="of the CPU kernels' q8_0/q4_0/q4_1/q4_k/q6_k matrices: int16 (default: VNNI dot products, "
                        "logits within ~0.004), int8 (faster at many rows, llama.cpp's choice, logits move "
                        "up to ~1.6), float32 (the stored rows dequantised: exact)")
    p.add_argument("--lora-backend", choices=("custom", "gather"), default=DEFAULTS["lora_backend"],
                   help="custom: the compiled kernels; gather: plain MindSpore ops with the gather-BMM twin")
    p.add_argument("--dtype", choices=FLOAT_DTYPES, default=DEFAULTS["dtype"],
                   help="compute dtype of the MindSpore Cells path (gather backend, Ascend); "
                        "the CPU kernels always accumulate in float32")
    p.add_argument("--kv-dtype", choices=FLOAT_DTYPES, default=DEFAULTS["kv_dtype"],
                   help="what the KV cache holds: float32, or float16/bfloat16 (half the bytes a decode step "
                        "reads at long contexts; CPU kernels only, k and v rounded to nearest even)")


def engine_options(args):
    """The Engine keyword arguments of parsed engine options (defaults for those `args` lacks)."""
    return {key: getattr(args, key, default) for key, default in DEFAULTS.items()}


def runs_on(engine):
    """'CPU, custom kernels, weights native: q4_1 x210, q8_0 x1 (int16 activations), graph mode'."""
    kv = "" if engine.kv_dtype == "float32" else f", {engine.kv_dtype} KV cache"
    return f"{device()}, {engine.lora_backend} kernels, weights {engine.weights}{kv}, {engine.mode} mode"


def conservative_text():
    """The conservative CoLD settings, for --help texts."""
    from cold_ms.adapter_defaults import CONSERVATIVE
    return ", ".join(f"{k} {v}" for k, v in CONSERVATIVE.items())


def apply_defaults(args, adapters, expert):
    """Fill --alpha, --beta, --mask, --beta-schedule left unset from the expert's own settings
    (its cold_config.json, else the conservative ones); returns where they came from."""
    from cold_ms import adapter_defaults
    from cold_ms.config import ChoiceParams, ColdParams
    own = adapter_defaults.of(adapters, expert)
    unset = [k for k in adapter_defaults.KEYS if getattr(args, k) is None]
    for k in unset:
        setattr(args, k, own[k])
    ColdParams(args.alpha, args.beta, args.mask)
    ChoiceParams(args.beta_schedule, args.temperature, args.top_p, args.seed)
    return own["source"] if unset else "the command line"


def kernel_build_note():
    """', kernels built in N s' when this run compiled the CPU kernels (the first run on a machine)."""
    from cold_ms.ops._library import build_seconds
    return f", CPU kernels built in {build_seconds():.1f}s" if build_seconds() else ""
