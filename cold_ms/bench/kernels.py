"""`bench.py kernels`: the C++ harness tools/kernel_bench.cc, built with the kernel library's own
flags and generated header, timing all projections of one decode step per weight layout and
token-row count, every variant alternating in one process. The figures in docs/performance.md
that say "harness" come from it."""
import os
import subprocess
import sys
import tempfile

from cold_ms.ops import _library
from cold_ms.ops.operands import generated_header

HARNESS = os.path.join(_library.ROOT, "tools", "kernel_bench.cc")


def add_arguments(p):
    p.add_argument("--variants", nargs="+", default=["f32", "f32p", "q4_1", "q4_1p16", "q4_1p8", "q8_0p16"],
                   help="f32 | f32p | bf16 | f16 | q8_0 | q4_0 | q4_1 | q4_k | q6_k (rows as stored, float32 "
                        "activations) | q8_0pB | q4_0pB | q4_1pB (integer panels, B = 8 or 16 activation bits)")
    p.add_argument("--rows", default="1,2,8,16", help="token rows, comma-separated")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--shape", default="30,576,192,1536", help="layers,d,kv,ffn (default: SmolLM2-135M)")
    p.add_argument("--march", default="native", help="-march of the build (haswell: the AVX2 path)")


def build(march):
    """Path of the harness binary for `march` (built into a temporary directory)."""
    cxx, _ = _library._compiler()
    folder = tempfile.mkdtemp(prefix="cold_kernel_bench_")
    with open(os.path.join(folder, _library.GENERATED), "w", encoding="utf-8") as f:
        f.write(generated_header())
    binary = os.path.join(folder, "kernel_bench")
    flags = [f for f in _library.FLAGS if f not in ("-shared", "-fPIC")] + [f"-march={march}"]
    proc = subprocess.run([cxx, *flags, f"-I{folder}", f"-I{_library.CPU_DIR}", HARNESS, "-o", binary],
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"building {HARNESS} failed:\n{proc.stderr[-2000:]}")
    return binary


def run(args):
    layers, d, kv, ffn = args.shape.split(",")
    print(f"cpu: {_library.cpu_model()}, {os.cpu_count()} cores, -march={args.march}", flush=True)
    out = subprocess.run([build(args.march), str(args.rounds), layers, d, kv, ffn, args.rows, *args.variants])
    sys.exit(out.returncode)
