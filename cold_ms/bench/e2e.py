"""`bench.py e2e`: per-token decode latency, time to first token, tokens/s and peak RSS of
greedy, fused CoLD and the unfused baselines (and, with --peer hf, transformers + PEFT).

For each batch size, every variant lives in its own fresh worker process (MindSpore does
not return a dropped graph's memory, so a reused process would carry the previous batch
size's peak); the coordinator runs the variants in turn, ROUNDS times, in a rotating
order, so slow drifts of the machine hit every variant alike.
floor_fraction = (weight bytes a step must read / read bandwidth) / time per step, taken in
every round with the bandwidth measured right after that round's steps, and the median over
the rounds reported: this VM's bandwidth swings between about 44 and 79 GB/s within
seconds, and a single measurement at the start gave fractions above 1.
"""
import os
import shutil
import statistics
import sys
import tempfile

import numpy as np

from cold_ms.bench.random_model import SIZES, write_random_adapter, write_random_checkpoint
from cold_ms.bench.serve_client import prompt_text
from cold_ms.bench.workers import peak_rss_mb, start
from cold_ms.config import FLOAT_DTYPES
from cold_ms.formats.chat import chat_prompt_ids
from cold_ms.wtypes import CHOICES as WEIGHT_CHOICES

PEERS = ("hf", "llamacpp")

PROMPT_TEXT = ("A baker makes 4 trays of 12 muffins and sells 29 of them. How many muffins are left? "
               "Solve step by step and end with '#### <number>'.")
SYNTHETIC_PROMPT_LEN = 70  # the length of PROMPT_TEXT in SmolLM2's chat template


def bench_prompt(model, tokens=None):
    """PROMPT_TEXT in the model's chat template, or with `tokens`, exactly that many tokens of the
    serving benchmark's natural-looking text (a long context: what a step reads from the KV cache
    grows with it); a model without a tokenizer (random weights) gets seeded token ids of the same
    length: time and memory do not depend on which tokens."""
    tok = model.tokenizer
    if tokens:
        if tok is None:
            return np.random.default_rng(0).integers(3, model.config.vocab_size, tokens).tolist()
        return tok.encode(prompt_text(0, 2 * tokens))[:tokens]  # twice the words: never short of tokens
    if tok is not None and tok.chat_template:
        return chat_prompt_ids(tok, [{"role": "user", "content": PROMPT_TEXT}])
    return np.random.default_rng(0).integers(3, model.config.vocab_size, SYNTHETIC_PROMPT_LEN).tolist()


def random_checkpoint(spec, root):
    """random:SIZE -> (model dir, NAME=DIR of a random LoRA expert), written under root."""
    size = spec.partition(":")[2]
    if size not in SIZES:
        raise SystemExit(f"--model random:SIZE: SIZE must be one of {', '.join(SIZES)}, got {size!r}")
    model_dir, adapter_dir = write_random_checkpoint(root, size)
    return model_dir, f"lora={adapter_dir}"


def add_arguments(p):
    p.add_argument("--model", help="model directory or .gguf, a model package's name (smollm2, gemma3), or "
                                   "random:SIZE for a seeded random model of that size and family "
                                   f"({', '.join(SIZES)}) with a random r=16 LoRA expert; "
                                   "default: the embedded SmolLM2-135M-Instruct")
    p.add_argument("--adapter", help="expert: shipped adapter name or NAME=DIR (ignored with random:SIZE); "
                                     "default: the shipped 'math' on the embedded model, else a random r=16 "
                                     "LoRA on every projection of the model (its speed does not depend on values)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--steps", type=int, default=64, help="decode steps per variant and batch (after warm-up)")
    p.add_argument("--rounds", type=int, default=4, help="the steps are split over this many alternations "
                                                             "(this VM's bandwidth drifts within seconds)")
    p.add_argument("--mode", choices=("graph", "pynative"), default="graph")
    p.add_argument("--variants", default="greedy,cold,cold_two_pass,cold_two_models",
                   help="of greedy, cold, cold_two_pass, cold_two_models, cold_model (needs --amateur-model)")
    p.add_argument("--amateur-model", help="a separate amateur model for the cold_model variant (same tokenizer)")
    p.add_argument("--weights", nargs="+", default=["auto"], choices=list(WEIGHT_CHOICES),
                   help="weight formats to run every variant in (a benchmark dimension)")
    p.add_argument("--activations", default="int16", choices=("int16", "int8", "float32"),
                   help="of the quantised GEMVs (see cold_ms/ops/prepare.py)")
    p.add_argument("--kv-dtypes", nargs="+", default=["float32"], choices=FLOAT_DTYPES,
                   help="KV cache dtypes to run every variant with (a benchmark dimension, like --weights)")
    p.add_argument("--prompt-tokens", type=int,
                   help="a prompt of exactly this many tokens of natural-looking text (default: a ~70-token "
                        "chat question); long contexts show what reading the KV cache costs")
    p.add_argument("--peer", choices=PEERS, action="append", default=[],
                   help="also run a peer: hf (transformers + PEFT, CoLD) or llamacpp (llama-cpp-python "
                        "greedy on the same GGUF, B=1 only); repeatable")
    p.add_argument("--json", help="write results here (plus .md and .png beside it)")


def _worker(conn, key, args):
    os.environ.setdefault("GLOG_v", "3")
    from cold_ms.bench.e2e_variants import build, weight_bytes
    from cold_ms.formats.adapters import AdapterRegistry, load_peft_adapter
    from cold_ms.formats.model import load_model
    from cold_ms.formats.shipped import resolve_adapter
    variant, weights, kv_dtype = key
    model = load_model(args["model"])
    name, path = resolve_adapter(args["adapter"])
    adapters = AdapterRegistry([load_peft_adapter(path, name, model.config)])
    prompt = bench_prompt(model, args["prompt_tokens"])
    per_run = args["steps"] // args["rounds"] + 2
    max_len = -(-(len(prompt) + per_run + 1) // 64) * 64
    batch = args["batch"]
    if variant == "hf":
        from cold_ms.bench.hf_peer import HFVariant
        v = HFVariant(model, path, name, batch)
    elif variant == "llamacpp":
        from cold_ms.bench.llamacpp_peer import LlamaCppVariant
        v = LlamaCppVariant(model, max_len)
    else:
        amateur = load_model(args["amateur_model"]) if variant == "cold_model" else None
        v = build(variant, model, adapters, name, batch, max_len, args["mode"], weights, args["activations"], amateur,
                  kv_dtype)
    v.prefill(prompt)  # compiles
    for _ in range(2):
        v.step()
    conn.send({"ready": True, "summary": v.summary,
               "weight_bytes": weight_bytes(variant, v.base_bytes, adapters.adapters[0])})
    while True:
        if conn.recv() == "stop":
            conn.send({"peak_rss_mb": peak_rss_mb()})
            return
        ttft = v.prefill(prompt)
        for _ in range(2):  # warm-up after the prefill
            v.step()
        conn.send({"ttft_s": ttft, "steps_s": [v.step() for _ in range(per_run - 2)]})


def _row(key, batch, mode, times, ttfts, rss, floor_fraction, summary):
    ms = [t * 1e3 for t in times]
    med = statistics.median(ms)
    variant, weights, kv_dtype = key
    return {"variant": variant, "weights": weights, "kv_dtype": kv_dtype, "reads": summary, "batch": batch,
            "mode": mode,
            "ms_per_step_median": round(med, 2),
            "ms_per_step_p90": round(float(np.percentile(ms, 90)), 2), "steps": len(ms),
            "ttft_ms": round(1e3 * statistics.median(ttfts), 1), "tokens_per_s": round(batch * 1e3 / med, 1),
            "peak_rss_mb": round(rss, 0), "floor_fraction": round(floor_fraction, 3)}


def run(args):
    root = tempfile.mkdtemp(prefix="cold_e2e_")
    try:
        if (args.model or "").startswith("random:"):
            args.model, args.adapter = random_checkpoint(args.model, root)
        elif args.adapter is None:
            args.adapter = default_expert(args.model, root)
        return _run(args)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def default_expert(model, root):
    """The shipped 'math' for the embedded model (trained on it), else NAME=DIR of a random r=16
    LoRA on every projection of `model`, written under root."""
    from cold_ms.formats.model import default_model_path, load_model
    if model in (None, "smollm2") or model == default_model_path():
        return "math"
    return f"lora={write_random_adapter(os.path.join(root, 'lora'), load_model(model).config)}"


def _keys(args):
    """(variant, weights, KV cache dtype): every variant in every weight format and cache dtype, then
    each peer once (on the checkpoint's own weights). The llama.cpp peer decodes one sequence: B=1 only."""
    keys = [(v, w, kv) for w in args.weights for kv in args.kv_dtypes for v in args.variants.split(",") if v]
    return keys + [(peer, "checkpoint", "its own") for peer in args.peer]


def _run(args):
    from cold_ms.report import write_e2e
    from cold_ms.ops._library import cpu_model, kernel_paths, read_bandwidth_gbps
    bandwidth = []
    spec = {"model": args.model, "adapter": args.adapter, "steps": args.steps, "rounds": args.rounds,
            "mode": args.mode, "activations": args.activations, "amateur_model": args.amateur_model,
            "prompt_tokens": args.prompt_tokens}
    machine = f"{cpu_model()}, {os.cpu_count()} cores, kernel paths: {kernel_paths()}"
    print(f"cpu: {machine}", file=sys.stderr)
    mode = lambda key: {"hf": "torch", "llamacpp": "llama.cpp"}.get(key[0], args.mode)  # noqa: E731
    rows = []
    for b in args.batches:
        keys = [k for k in _keys(args) if not (k[0] == "llamacpp" and b != 1)]
        times, ttfts, rss = {k: [] for k in keys}, {k: [] for k in keys}, {}
        fractions = {k: [] for k in keys}
        workers = {}
        try:
            for k in keys:
                workers[k] = start(_worker, (k, dict(spec, batch=b)), f"worker {k} (batch {b})")
                print(f"{k[0]} ({k[1]}, {k[2]} KV cache) reads {workers[k][2]['summary']}", file=sys.stderr,
                      flush=True)
            for r in range(args.rounds):
                order = keys[r % len(keys):] + keys[:r % len(keys)]
                for k in order:
                    workers[k][1].send("run")
                    out = workers[k][1].recv()
                    times[k] += out["steps_s"]
                    ttfts[k].append(out["ttft_s"])
                    bandwidth.append(read_bandwidth_gbps(512, 3))  # right after the steps, every worker idle
                    floor_s = workers[k][2]["weight_bytes"] / (bandwidth[-1] * 1e9)
                    fractions[k].append(floor_s / statistics.median(out["steps_s"]))
            for k, (proc, conn, _) in workers.items():
                conn.send("stop")
                rss[k] = conn.recv()["peak_rss_mb"]
                proc.join(30)
        finally:
            for proc, _, _ in workers.values():
                if proc.is_alive():
                    proc.kill()
        rows += [_row(k, b, mode(k), times[k], ttfts[k], rss[k], statistics.median(fractions[k]),
                      workers[k][2]["summary"]) for k in keys]
        print(f"batch {b}: " + ", ".join(f"{'/'.join(k)} {1e3 * statistics.median(times[k]):.1f} ms" for k in keys),
              file=sys.stderr, flush=True)
        # after every batch size, so finished ones survive a later failure (e.g. out of memory)
        write_e2e({"machine": machine, "e2e": rows, "bandwidth_gbps": round(statistics.median(bandwidth), 2),
                   "bandwidth_samples_gbps": [round(x, 1) for x in bandwidth]}, args.json)
