"""`bench.py bgmv`: the custom BGMV kernel vs the gather-BMM twin inside a compiled graph.

The graph chains CHAIN calls, each with its own adapter stacks and fed by the previous
output, as the layers of a model are: nothing can be hoisted or shared between calls.
Per-call time = (median graph time - median time of an empty graph) / CHAIN.
Each (shape, backend) point runs in its own process so that its peak RSS is its own:
peak extra memory = peak RSS while compiling and running - RSS once the inputs exist.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time

CHAIN = 16


def add_arguments(p):
    p.add_argument("--hidden", type=int, default=4096)
    p.add_argument("--ranks", type=int, nargs="+", default=[8, 16, 64])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 32])
    p.add_argument("--adapters", type=int, nargs="+", default=[1, 4])
    p.add_argument("--calls", type=int, default=50)
    p.add_argument("--json", help="write the results here")


def _rss_kb(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field))


def worker(spec):
    """Time one point; prints a JSON line."""
    import numpy as np
    import mindspore as ms
    from mindspore import Tensor, nn
    from cold_ms.ops import bgmv, registry
    from cold_ms.runtime import configure

    configure("graph")
    backend = registry.select_backend(spec["backend"])

    class Chain(nn.Cell):
        def __init__(self, stacks):
            super().__init__()
            self.stacks = stacks

        def construct(self, y, idx):
            for a, b in self.stacks:
                y = bgmv.add_lora(y, y, a, b, idx, backend)
            return y

    class Empty(nn.Cell):
        def construct(self, y, idx):
            return y * 1.0

    rng = np.random.default_rng(0)
    h, r, n, s = spec["hidden"], spec["rank"], spec["batch"], spec["adapters"]
    stacks = tuple((Tensor(rng.standard_normal((s, r, h)).astype(np.float32) / np.sqrt(h)),
                    Tensor(rng.standard_normal((s, r, h)).astype(np.float32) / np.sqrt(r)))
                   for _ in range(CHAIN))
    args = (Tensor(rng.standard_normal((n, 1, h)).astype(np.float32)),
            Tensor((np.arange(n) % s).astype(np.int32)))  # every adapter in use
    base = _rss_kb("VmRSS")
    chain_ms = _median_ms(Chain(stacks), args, spec["calls"])
    peak = (_rss_kb("VmHWM") - base) / 1024
    empty_ms = _median_ms(Empty(), args, spec["calls"])
    print(json.dumps({"ms": (chain_ms - empty_ms) / CHAIN, "peak_mb": peak, "backend": backend}))


def _median_ms(cell, args, calls):
    for _ in range(5):
        cell(*args).asnumpy()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        cell(*args).asnumpy()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _point(spec):
    out = subprocess.run([sys.executable, "-m", "cold_ms.bench.bgmv", json.dumps(spec)],
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"benchmark point {spec} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(args):
    rows = []
    print(f"{'hidden':>6} {'rank':>4} {'batch':>5} {'adapters':>8} {'custom ms':>10} {'gather ms':>10} "
          f"{'speed-up':>8} {'custom MB':>9} {'gather MB':>9}")
    for rank in args.ranks:
        for adapters in args.adapters:
            for batch in args.batches:
                spec = dict(hidden=args.hidden, rank=rank, batch=batch, adapters=adapters, calls=args.calls)
                custom = _point(dict(spec, backend="custom"))
                gather = _point(dict(spec, backend="gather"))
                if custom["backend"] != "custom":
                    sys.exit("the custom kernel could not be built here; see the warning above")
                row = {"hidden": args.hidden, "rank": rank, "batch": batch, "adapters": adapters,
                       "custom_ms": round(custom["ms"], 4), "gather_ms": round(gather["ms"], 4),
                       "custom_peak_mb": round(custom["peak_mb"], 1),
                       "gather_peak_mb": round(gather["peak_mb"], 1)}
                rows.append(row)
                print(f"{args.hidden:>6} {rank:>4} {batch:>5} {adapters:>8} {row['custom_ms']:>10.4f} "
                      f"{row['gather_ms']:>10.4f} {row['gather_ms'] / row['custom_ms']:>7.2f}x "
                      f"{row['custom_peak_mb']:>9.1f} {row['gather_peak_mb']:>9.1f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"bgmv": rows}, f, indent=1)


if __name__ == "__main__":
    import os
    os.environ.setdefault("GLOG_v", "3")
    worker(json.loads(sys.argv[1]))
