"""`bench.py kernels`: the C++ harness tools/kernel_bench.cc, built with the kernel library's own
flags and generated header, timing all projections of one decode step per weight layout and
token-row count, every variant alternating in one process. The figures in docs/performance.md
that say "harness" come from it."""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

from cold_ms.ops import _library
from cold_ms.ops.operands import generated_header
from cold_ms.runtime import cache_dir

HARNESS = os.path.join(_library.ROOT, "tools", "kernel_bench.cc")


def add_arguments(p):
    p.add_argument("--variants", nargs="+", default=["f32", "f32p", "q4_1", "q4_1p16", "q4_1p8", "q8_0p16"],
                   help="f32 | f32p | bf16 | f16 | q8_0 | q4_0 | q4_1 | q4_k | q6_k (rows as stored, float32 "
                        "activations) | q8_0pB | q4_0pB | q4_1pB | q4_kpB | q6_kpB (integer panels, B = 8 or 16 activation bits)")
    p.add_argument("--rows", default="1,2,8,16", help="token rows, comma-separated")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--shape", default="30,576,192,1536", help="layers,d,kv,ffn (default: SmolLM2-135M)")
    p.add_argument("--march", default="native", help="-march of the build (haswell: the AVX2 path)")


def build(march):
    """Path of the harness binary for `march`, built once per source version, compiler and CPU into
    the kernel cache (as the kernel library is: cold_ms/ops/_library.py)."""
    cxx, version = _library._compiler()
    header = generated_header()
    flags = [f for f in _library.FLAGS if f not in ("-shared", "-fPIC")] + [f"-march={march}"]
    digest = hashlib.sha256(repr((flags, version, _library._cpu_flags(), header)).encode())
    for name in sorted(os.listdir(_library.CPU_DIR)) + [HARNESS]:
        with open(os.path.join(_library.CPU_DIR, name), "rb") as f:
            digest.update(f.read())
    binary = os.path.join(cache_dir("kernels", "bench-" + digest.hexdigest()[:16]), "kernel_bench")
    if os.path.isfile(binary):
        return binary
    folder = tempfile.mkdtemp(dir=os.path.dirname(binary))  # the same file system: the rename is atomic
    with open(os.path.join(folder, _library.GENERATED), "w", encoding="utf-8") as f:
        f.write(header)
    proc = subprocess.run([cxx, *flags, f"-I{folder}", f"-I{_library.CPU_DIR}", HARNESS, "-o", folder + "/bin"],
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"building {HARNESS} failed:\n{proc.stderr[-2000:]}")
    os.replace(folder + "/bin", binary)  # whole or absent
    shutil.rmtree(folder, ignore_errors=True)
    return binary


def run(args):
    layers, d, kv, ffn = args.shape.split(",")
    print(f"cpu: {_library.cpu_model()}, {os.cpu_count()} cores, -march={args.march}", flush=True)
    out = subprocess.run([build(args.march), str(args.rounds), layers, d, kv, ffn, args.rows, *args.variants])
    sys.exit(out.returncode)
