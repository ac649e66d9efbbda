"""`bench.py train`: one LoRA training step (forward, backward, optimizer update) of cold_ms's
Trainer against transformers + PEFT on the same batch: the same float32 weights, tokens, answer
labels, rank, alpha, targets and initial A (ours, written as a PEFT adapter and loaded by the
peer; B = 0), both sides on the same number of threads.

Each side lives in its own process (spawned: a clean MindSpore, a clean torch); the coordinator
runs them in turn, ROUNDS times, in alternating order, so the machine's drifts (other jobs on
shared cores) hit both. The peer computes the loss as its users do (`labels=`: the LM head on
every position); ours scores the answer positions only. Its step-0 loss must equal ours (B = 0:
both are the base model's loss on the batch), which the report checks.
"""
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

from cold_ms.bench.workers import peak_rss_mb, start
from cold_ms.config import LORA_TARGETS

PEER_MODULES = ("torch", "transformers", "peft")


def add_arguments(p):
    p.add_argument("--model", help="model directory or .gguf (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--task", default="facts", help="task whose first --batch training examples form the batch")
    p.add_argument("--chat-template", help="built-in template (chatml, llama2) instead of the checkpoint's")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--alpha", type=float, default=32.0)
    p.add_argument("--targets", default=",".join(LORA_TARGETS))
    p.add_argument("--steps", type=int, default=12, help="timed steps per side, after one untimed (compile) step")
    p.add_argument("--rounds", type=int, default=4, help="the timed steps are split over this many alternations")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="threads of each side")
    p.add_argument("--no-peer", action="store_true", help="time cold_ms alone")
    p.add_argument("--json", help="write results here (plus .md beside it)")


def peer_missing():
    """The peer's modules that are not installed (torch, transformers, peft)."""
    return [m for m in PEER_MODULES if importlib.util.find_spec(m) is None]


def hf_batch(tokens, pick, labels, lengths):
    """Our batch (tokens (B, T), pick (N,) flat positions predicting labels (N,), -100 padding)
    as HF's: input_ids, attention_mask (1 on the rows' real tokens) and labels (B, T), -100
    except at position p + 1 for each picked p (HF shifts the labels by one inside its loss)."""
    rows, seq = tokens.shape
    hf_labels = np.full(rows * seq, -100, np.int64)
    real = labels != -100
    hf_labels[pick[real] + 1] = labels[real]
    mask = (np.arange(seq)[None, :] < np.asarray(lengths)[:, None]).astype(np.int64)
    return tokens.astype(np.int64), mask, hf_labels.reshape(rows, seq)


class OursSide:
    """cold_ms's Trainer on the batch of the task's first `batch` training examples."""

    def __init__(self, spec, out_dir):
        from cold_ms import tasks
        from cold_ms.bench.hf_peer import export_hf
        from cold_ms.formats.model import load_model
        from cold_ms.runtime import configure
        from cold_ms.training.data import make_batch
        from cold_ms.training.trainer import TrainConfig, Trainer, export_peft
        configure("graph")
        self.model = load_model(spec["model"])
        examples = tasks.examples(spec["task"], "train")[:spec["batch"]]
        # one epoch per step run (the batch is the whole data): the learning-rate schedule lasts them all;
        # max_len as train_lora.py's default
        cfg = TrainConfig(rank=spec["rank"], alpha=spec["alpha"], targets=tuple(spec["targets"].split(",")),
                          batch=spec["batch"], save_every=10 ** 9, epochs=spec["steps"] + 1)
        self.trainer = Trainer(self.model, examples, cfg, out_dir, log=lambda m: None,
                               chat_template=spec["chat_template"])
        self.rows = self.trainer.plan[0]
        self.adapter_dir = os.path.join(out_dir, "initial")  # A as initialised, B = 0: the peer's start
        export_peft(self.trainer.lm, cfg, self.adapter_dir, self.model.config.name)
        self.hf_dir = os.path.join(out_dir, "hf")  # the peer's model: our float32 weights, no MindSpore there
        os.makedirs(self.hf_dir)
        export_hf(self.model, self.hf_dir)
        encoded = [self.trainer.encoded[i] for i in self.rows]
        self.batch = hf_batch(*make_batch(encoded, cfg.batch, self.trainer.shape), [len(ids) for ids, _ in encoded])
        self.summary = f"cold_ms (MindSpore graph mode, shape {self.trainer.shape})"

    def step(self):
        return self.trainer.step(self.rows)


class PeftSide:
    """transformers + PEFT: the HF model directory of our float32 weights (hf_peer.export_hf), the
    adapter ours initially, AdamW; a step is forward with labels, backward, optimizer step, zero_grad."""

    def __init__(self, hf_dir, adapter_dir, batch, threads, lr=1e-3):
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM
        torch.set_num_threads(threads)
        base = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
        self.model = PeftModel.from_pretrained(base, adapter_dir, is_trainable=True).train()
        params = [p for p in self.model.parameters() if p.requires_grad]
        # eps as MindSpore's AdamWeightDecay (ours), no weight decay on either side
        self.opt = torch.optim.AdamW(params, lr=lr, eps=1e-6, weight_decay=0.0)
        self.inputs = dict(zip(("input_ids", "attention_mask", "labels"), (torch.from_numpy(a) for a in batch)))
        self.summary = f"transformers + PEFT (torch {torch.__version__}, {torch.get_num_threads()} threads)"

    def loss_and_backward(self):
        loss = self.model(**self.inputs).loss
        loss.backward()
        return float(loss.detach())

    def step(self):
        loss = self.loss_and_backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return loss


def _worker(conn, side, spec, peer_args):
    os.environ.setdefault("GLOG_v", "3")
    out_dir = tempfile.mkdtemp(prefix="cold_train_bench_")
    try:
        if side == "cold_ms":
            import mindspore as ms
            ms.set_context(runtime_num_threads=spec["threads"])
            v = OursSide(spec, out_dir)
            extra = {"batch": v.batch, "adapter_dir": v.adapter_dir, "hf_dir": v.hf_dir}
        else:
            v = PeftSide(*peer_args, spec["threads"])
            extra = {}
        loss0 = v.step()  # compiles (ours); the loss before any update
        conn.send(dict(extra, summary=v.summary, loss0=loss0))
        while True:
            n = conn.recv()
            if n == "stop":
                conn.send(peak_rss_mb())
                return
            times = []
            for _ in range(n):
                start = time.perf_counter()
                v.step()
                times.append(time.perf_counter() - start)
            conn.send(times)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def run(args):
    from cold_ms.ops._library import cpu_model
    spec = {k: getattr(args, k) for k in ("model", "task", "chat_template", "batch", "rank", "alpha", "targets",
                                          "threads", "steps")}
    # both sides inherit the OpenMP wait policy `import cold_ms` sets (cold_ms/__init__.py), which
    # also served torch better than its defaults on shared cores (its matmuls: 43 against 24-29 GFLOPS)
    omp = f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')} GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT')}"
    machine = f"{cpu_model()}, {os.cpu_count()} cores, {args.threads} threads a side, {omp}"
    print(f"cpu: {machine}; load average {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
    missing = [] if args.no_peer else peer_missing()
    if missing:
        print(f"bench.py train: peer skipped: {', '.join(missing)} not installed (pip install torch "
              f"transformers peft)", file=sys.stderr)
    workers = {}
    try:
        workers["cold_ms"] = start(_worker, ("cold_ms", spec, None), "the cold_ms worker")
        ready = workers["cold_ms"][2]
        if not (args.no_peer or missing):
            workers["peft"] = start(_worker, ("peft", spec, (ready["hf_dir"], ready["adapter_dir"], ready["batch"])),
                                     "the peft worker")
        times = _alternate(workers, args.steps, args.rounds)
        for _, conn, said in workers.values():
            conn.send("stop")
            said["peak_rss_mb"] = conn.recv()
    finally:
        for proc, _, _ in workers.values():
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    result = _result(args, machine, ready["batch"], workers, times)
    _report(result, args.json)
    return result


def _alternate(workers, steps, rounds):
    """Per-step seconds of every side: `rounds` turns each of about steps/rounds steps, the order
    reversed every round."""
    names, times = list(workers), {k: [] for k in workers}
    per_round = [steps // rounds + (r < steps % rounds) for r in range(rounds)]
    for r, n in enumerate(per_round):
        for name in (names if r % 2 == 0 else names[::-1]):
            workers[name][1].send(n)
            times[name] += workers[name][1].recv()
    return times


def _result(args, machine, batch, workers, times):
    tokens, mask, labels = batch
    sides = [{"side": name, "summary": ready["summary"], "loss_step0": round(ready["loss0"], 6),
              "ms_per_step_median": round(1e3 * statistics.median(times[name]), 1),
              "ms_per_step_min": round(1e3 * min(times[name]), 1), "steps": len(times[name]),
              "peak_rss_mb": round(ready["peak_rss_mb"])}
             for name, (_, _, ready) in workers.items()]
    result = {"machine": machine, "load_average_end": round(os.getloadavg()[0], 2),
              "batch": {"rows": int(tokens.shape[0]), "seq_len": int(tokens.shape[1]), "real_tokens": int(mask.sum()),
                        "answer_tokens": int((labels != -100).sum())},
              "config": {"task": args.task, "rank": args.rank, "alpha": args.alpha, "targets": args.targets,
                         "threads": args.threads, "dtype": "float32", "rounds": args.rounds},
              "sides": sides}
    if len(sides) == 2:
        ours, peer = sides
        result["ratio_ours_to_peft"] = round(ours["ms_per_step_median"] / peer["ms_per_step_median"], 3)
        result["loss_step0_abs_diff"] = float(abs(workers["cold_ms"][2]["loss0"] - workers["peft"][2]["loss0"]))
    return result


def markdown(result):
    b, c = result["batch"], result["config"]
    lines = [f"LoRA training step, {c['dtype']}, batch {b['rows']} x {b['seq_len']} tokens ({b['real_tokens']} real, "
             f"{b['answer_tokens']} answer), rank {c['rank']}, alpha {c['alpha']}, targets {c['targets']}; "
             f"{result['machine']}", "",
             "| side | ms/step (median) | ms/step (min) | steps | loss at step 0 | peak RSS MB |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {s['summary']} | {s['ms_per_step_median']} | {s['ms_per_step_min']} | {s['steps']} | "
              f"{s['loss_step0']:.6f} | {s['peak_rss_mb']} |" for s in result["sides"]]
    if "ratio_ours_to_peft" in result:
        lines += ["", f"ours / PEFT: {result['ratio_ours_to_peft']:.3f}x (step-0 losses differ by "
                      f"{result['loss_step0_abs_diff']:.2e})"]
    return "\n".join(lines) + "\n"


def _report(result, json_path):
    import json
    text = markdown(result)
    print(text)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(result, f, indent=1)
        with open(os.path.splitext(json_path)[0] + ".md", "w") as f:
            f.write(text)
