"""Accuracy of base greedy, expert greedy and CoLD sweeps on a task, resumable.

Each run (mode, alpha, beta) appends one JSON line per example to OUT/<run>.jsonl as the
example finishes; a rerun skips the ids already there, so an interrupted evaluation
continues where it stopped. summary.json, summary.md and summary.png are rebuilt from
the JSONL files at the end.
"""
import json
import math
import os
import time
from dataclasses import dataclass

from cold_ms import tasks
from cold_ms.errors import InputError
from cold_ms.pipeline.batching import Request
from cold_ms.formats.chat import chat_prompt_ids
from cold_ms.pipeline.jsonl import open_for_append, read_done

MODES = ("base", "expert", "cold")


@dataclass(frozen=True)
class Run:
    mode: str
    alpha: float = 0.0
    beta: float = 0.0

    @property
    def name(self):
        return self.mode if self.mode != "cold" else f"cold_a{self.alpha:g}_b{self.beta:g}"


def plan_runs(modes, alphas, betas):
    unknown = set(modes) - set(MODES)
    if unknown:
        raise InputError(f"unknown modes {sorted(unknown)}; choose from {', '.join(MODES)}")
    runs = [Run(m) for m in modes if m != "cold"]
    if "cold" in modes:
        runs += [Run("cold", a, b) for a in alphas for b in betas]
    return runs


def wilson(correct, n, z=1.96):
    """95% Wilson score interval of a proportion."""
    if n == 0:
        return [0.0, 0.0]
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


class Evaluator:
    """`engines`: {"greedy": Engine without amateur rows, "cold": fused Engine}, either may be
    missing when no run needs it (set after construction if sizes depend on the prompts)."""

    def __init__(self, engines, tokenizer, task, examples, out_dir, adapter, amateur="base",
                 max_new_tokens=256, chat_template=None):
        self.engines, self.tok, self.task = engines, tokenizer, task
        self.examples, self.out, self.adapter, self.amateur = examples, out_dir, adapter, amateur
        self.max_new = max_new_tokens
        self.prompts = {e.id: chat_prompt_ids(tokenizer, [{"role": "user", "content": e.question}], chat_template)
                        for e in examples}
        os.makedirs(out_dir, exist_ok=True)

    def _request(self, run, ex):
        expert = None if run.mode == "base" else self.adapter
        amateur = self.amateur if run.mode == "cold" else None
        return Request(self.prompts[ex.id], adapter=expert, amateur=amateur, alpha=run.alpha or 0.1,
                       beta=run.beta, max_new_tokens=self.max_new)

    def missing(self, run):
        """Examples of `run` without a result in its JSONL file yet."""
        done = read_done(os.path.join(self.out, run.name + ".jsonl"))
        return [e for e in self.examples if e.id not in done]

    def run(self, run, progress=None):
        """Evaluate the missing examples of one run; returns (new tokens, seconds)."""
        path = os.path.join(self.out, run.name + ".jsonl")
        todo = self.missing(run)
        if not todo:
            return 0, 0.0
        engine = self.engines["cold" if run.mode == "cold" else "greedy"]
        tokens, start = 0, time.perf_counter()
        with open_for_append(path) as f:
            for res, ex in zip(_generate(engine, [self._request(run, e) for e in todo]), todo):
                text = self.tok.decode(res.token_ids)
                row = {"id": ex.id, "gold": ex.gold, "prediction": text,
                       "correct": tasks.is_correct(self.task, text, ex.gold), "tokens": len(res.token_ids)}
                f.write(json.dumps(row) + "\n")
                f.flush()
                tokens += len(res.token_ids)
                if progress:
                    progress.update(1)
        seconds = time.perf_counter() - start
        self._add_timing(run, tokens, seconds)
        return tokens, seconds

    def _timing_path(self):
        return os.path.join(self.out, "timing.json")

    def _add_timing(self, run, tokens, seconds):
        timing = json.load(open(self._timing_path())) if os.path.isfile(self._timing_path()) else {}
        t = timing.setdefault(run.name, {"tokens": 0, "seconds": 0.0})
        t["tokens"] += tokens
        t["seconds"] += seconds
        with open(self._timing_path(), "w") as f:
            json.dump(timing, f)

    def summary(self, runs):
        timing = json.load(open(self._timing_path())) if os.path.isfile(self._timing_path()) else {}
        ids = {e.id for e in self.examples}
        results = []
        for run in runs:
            rows = [r for i, r in read_done(os.path.join(self.out, run.name + ".jsonl")).items() if i in ids]
            correct = sum(r["correct"] for r in rows)
            t = timing.get(run.name, {})
            results.append({"mode": run.mode, "alpha": run.alpha if run.mode == "cold" else None,
                            "beta": run.beta if run.mode == "cold" else None, "n": len(rows),
                            "accuracy": round(correct / len(rows), 4) if rows else None,
                            "ci95": wilson(correct, len(rows)),
                            "tokens_per_s": round(t["tokens"] / t["seconds"], 2) if t.get("seconds") else None})
        return {"task": self.task, "n": len(self.examples), "adapter": self.adapter, "amateur": self.amateur,
                "results": results}


def _generate(engine, requests):
    """Results in request order, yielded as soon as every earlier one is done."""
    from cold_ms.pipeline.engine import Result
    results = [Result(list(r.prompt_ids), [], "") for r in requests]
    finished, emitted = set(), 0
    for ev in engine.stream(requests):
        results[ev.index].token_ids.append(ev.token_id)
        if ev.finish_reason:
            results[ev.index].finish_reason = ev.finish_reason
            finished.add(ev.index)
            while emitted in finished:
                yield results[emitted]
                emitted += 1
