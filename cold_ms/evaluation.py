"""Accuracy of base greedy, expert greedy and CoLD runs on one split of a task, resumable.

Each run (mode, alpha, beta) appends one JSON line per example to OUT/<run>.jsonl as the
example finishes; a rerun skips the ids already there, so an interrupted evaluation
continues where it stopped. Summaries are rebuilt from the JSONL files.

Under msrun every rank evaluates its share of the examples into its own part file
(OUT/<run>.jsonl.part-R-of-N, timing likewise); after each run rank 0 merges the parts
(pipeline/shards.py) so that every rank reads the whole run, which a summary or the choice
of --tune needs. The directory must be one every rank sees (shared storage across nodes).
"""
import json
import os
import time
from dataclasses import dataclass
from functools import cached_property

from cold_ms import tasks
from cold_ms.errors import InputError
from cold_ms.distributed import World, barrier
from cold_ms.formats.chat import chat_prompt_ids
from cold_ms.pipeline.batching import Request
from cold_ms.pipeline.jsonl import open_for_append
from cold_ms.pipeline.shards import merge, part_path, parts, read_rows
from cold_ms.stats import paired, wilson

MODES = ("base", "expert", "cold")


@dataclass(frozen=True)
class Run:
    mode: str
    alpha: float = 0.0
    beta: float = 0.0
    schedule: str = "fixed"  # of beta (config.BETA_SCHEDULES); named in the file of any other

    @property
    def name(self):
        if self.mode != "cold":
            return self.mode
        return f"cold_a{self.alpha:g}_b{self.beta:g}" + ("" if self.schedule == "fixed" else f"_{self.schedule}")


def plan_runs(modes, alphas, betas, schedule="fixed"):
    unknown = set(modes) - set(MODES)
    if unknown:
        raise InputError(f"unknown modes {sorted(unknown)}; choose from {', '.join(MODES)}")
    runs = [Run(m) for m in modes if m != "cold"]
    if "cold" in modes:
        runs += [Run("cold", a, b, schedule) for a in alphas for b in betas]
    return runs


def rate(rows, key):
    """(rate, 95% Wilson interval) of a boolean score over result rows; None for no rows."""
    hits = sum(bool(r[key]) for r in rows)
    return (round(hits / len(rows), 4) if rows else None), wilson(hits, len(rows))


def with_neither(rows):
    """Knowledge tasks: each row with "neither": the answer names neither the learned value nor
    (counterfacts) the base model's real-world one."""
    return [dict(r, neither=not (r["correct"] or r.get("base_value"))) for r in rows]


def mean_tokens(rows):
    """Mean generated tokens per answer (None without rows that counted them)."""
    counted = [r["tokens"] for r in rows if "tokens" in r]
    return round(sum(counted) / len(counted), 2) if counted else None


class Evaluator:
    """`engines`: {"greedy": Engine without amateur rows, "cold": fused Engine}, either may be
    missing when no run needs it (set after construction if sizes depend on the prompts).
    `world`: this rank, which runs world.share(examples) (every rank builds the same list)."""

    def __init__(self, engines, tokenizer, task, examples, out_dir, adapter, amateur="base",
                 max_new_tokens=256, chat_template=None, world=World()):
        self.engines, self.tok, self.task = engines, tokenizer, task
        self.examples, self.out, self.adapter, self.amateur = examples, out_dir, adapter, amateur
        self.max_new, self.chat_template, self.world = max_new_tokens, chat_template, world
        self.share = world.share(examples)
        os.makedirs(out_dir, exist_ok=True)

    @cached_property
    def prompts(self):
        return {e.id: chat_prompt_ids(self.tok, [{"role": "user", "content": e.question}], self.chat_template)
                for e in self.share}

    def _request(self, run, ex):
        expert = None if run.mode == "base" else self.adapter
        amateur = self.amateur if run.mode == "cold" else None
        return Request(self.prompts[ex.id], adapter=expert, amateur=amateur, alpha=run.alpha or 0.1,
                       beta=run.beta, beta_schedule=run.schedule, max_new_tokens=self.max_new)

    def path(self, run):
        return os.path.join(self.out, run.name + ".jsonl")

    def rows(self, run):
        """{id: result row} of this evaluation's examples that `run` has finished."""
        ids = {e.id for e in self.examples}
        return {i: r for i, r in read_rows(self.path(run)).items() if i in ids}

    def missing(self, run):
        """Examples of this rank's share of `run` without a result yet."""
        done = self.rows(run)
        return [e for e in self.share if e.id not in done]

    def run(self, run, progress=None):
        """Evaluate the missing examples of this rank's share of one run, then (under msrun)
        wait for every rank and merge their parts; returns this rank's (new tokens, seconds)."""
        todo = self.missing(run)
        tokens, seconds = (self._evaluate(run, todo, progress) if todo else (0, 0.0))
        if self.world.size > 1:
            barrier()
            if self.world.rank == 0:
                merge(self.path(run), [e.id for e in self.examples])
                self._merge_timing()
            barrier()  # the merged file is whole before any rank reads it
        return tokens, seconds

    def _evaluate(self, run, todo, progress):
        engine = self.engines["cold" if run.mode == "cold" else "greedy"]
        tokens, start = 0, time.perf_counter()
        with open_for_append(part_path(self.path(run), self.world)) as f:
            for res, ex in zip(_generate(engine, [self._request(run, e) for e in todo]), todo):
                text = self.tok.decode(res.token_ids)
                # knowledge tasks keep the real value and the question's template, for breakdowns
                extra = {k: getattr(ex, k) for k in ("original", "template") if getattr(ex, k)}
                row = {"id": ex.id, "gold": ex.gold, **extra, "prediction": text, **tasks.score(self.task, text, ex),
                       "tokens": len(res.token_ids)}
                f.write(json.dumps(row) + "\n")
                f.flush()
                tokens += len(res.token_ids)
                if progress:
                    progress.update(1)
        seconds = time.perf_counter() - start
        self._add_timing(run, tokens, seconds)
        return tokens, seconds

    def _timing(self, path=None):
        path = path or os.path.join(self.out, "timing.json")
        if not os.path.isfile(path):
            return {}
        with open(path) as f:
            return json.load(f)

    def _add_timing(self, run, tokens, seconds):
        path = part_path(os.path.join(self.out, "timing.json"), self.world)
        timing = self._timing(path)
        t = timing.setdefault(run.name, {"tokens": 0, "seconds": 0.0})
        t["tokens"] += tokens
        t["seconds"] += seconds
        with open(path, "w") as f:
            json.dump(timing, f)

    def _merge_timing(self):
        """Fold the ranks' timing parts into timing.json: tokens add up; the ranks ran side by
        side, so the run took the longest rank's seconds."""
        path = os.path.join(self.out, "timing.json")
        found = parts(path)
        if not found:
            return
        timing, ranks_timing = self._timing(), [self._timing(p) for p in found]
        for name in {n for r in ranks_timing for n in r}:
            ranks = [r.get(name, {"tokens": 0, "seconds": 0.0}) for r in ranks_timing]
            t = timing.setdefault(name, {"tokens": 0, "seconds": 0.0})
            t["tokens"] += sum(r["tokens"] for r in ranks)
            t["seconds"] += max(r["seconds"] for r in ranks)
        with open(path + ".tmp", "w") as f:
            json.dump(timing, f)
        os.replace(path + ".tmp", path)
        for p in found:
            os.remove(p)

    def result(self, run):
        """Accuracy (the learned-value rate of a knowledge task; for counterfacts the base-value
        rate too, for both knowledge tasks the neither rate), with 95% intervals; mean generated
        tokens per answer."""
        rows = list(self.rows(run).values())
        t = self._timing().get(run.name, {})
        cold = run.mode == "cold"
        out = {"mode": run.mode, "alpha": run.alpha if cold else None, "beta": run.beta if cold else None,
               **({"beta_schedule": run.schedule} if cold and run.schedule != "fixed" else {}), "n": len(rows),
               "correct": sum(bool(r["correct"]) for r in rows)}
        out["accuracy"], out["ci95"] = rate(rows, "correct")
        if any("base_value" in r for r in rows):
            out["base_value_rate"], out["base_value_ci95"] = rate(rows, "base_value")
        if self.task in tasks.KNOWLEDGE:
            out["neither_rate"], out["neither_ci95"] = rate(with_neither(rows), "neither")
        out["mean_tokens"] = mean_tokens(rows)
        out["tokens_per_s"] = round(t["tokens"] / t["seconds"], 2) if t.get("seconds") else None
        return out

    def paired(self, greedy, cold):
        """Paired counts and exact McNemar p of run `cold` against run `greedy` on the items both
        answered, per score: correct, and for a knowledge task base_value (counterfacts) and neither."""
        a, b = self.rows(greedy), self.rows(cold)
        scores = ["correct"] + (["base_value"] if any("base_value" in r for r in a.values()) else [])
        if self.task in tasks.KNOWLEDGE:
            a, b = ({r["id"]: r for r in with_neither(rows.values())} for rows in (a, b))
            scores.append("neither")
        return {s: paired(a, b, s) for s in scores}

    def summary(self, runs):
        """The results of `runs`; with an expert greedy run, each CoLD run paired against it."""
        out = {"task": self.task, "n": len(self.examples), "adapter": self.adapter, "amateur": self.amateur,
               "results": [self.result(run) for run in runs]}
        greedy = next((r for r in runs if r.mode == "expert"), None)
        if greedy is not None and any(r.mode == "cold" for r in runs):
            out["paired"] = {r.name: self.paired(greedy, r) for r in runs if r.mode == "cold"}
        return out


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
