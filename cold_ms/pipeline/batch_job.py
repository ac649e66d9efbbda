"""Batch jobs over a JSONL file (what a ModelArts batch/inference job runs).

Input lines: {"id", "prompt" or "messages", "adapter", "amateur", "alpha", "beta",
"max_tokens", "beta_schedule", "temperature", "top_p", "seed"} (all but id and
prompt/messages optional). Results are appended to the
output file as each request finishes. A line that cannot run (unknown adapter, alpha out
of range, ...) gets an "error" row instead of stopping the job. A rerun skips the ids
that have a result and retries those whose row is an error (the error rows are dropped
first), so a crashed or interrupted run resumes with nothing lost and every id once.
"""
import json
import signal
from numbers import Integral, Real

from cold_ms.errors import ColdError, InputError
from cold_ms.pipeline.batching import Request
from cold_ms.formats.chat import chat_prompt_ids
from cold_ms.pipeline.jsonl import keep_rows, open_for_append, read_done


def read_jobs(path):
    """The input lines as dicts, with unique ids (InputError naming the bad line)."""
    jobs, seen = [], set()
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except FileNotFoundError:
        raise InputError(f"input file not found: {path}") from None
    except (IsADirectoryError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a JSON-lines text file ({e})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            job = json.loads(line)
        except json.JSONDecodeError as e:
            # json's own "line 1 column 5" counts within this one line: name the file's line and the column
            raise InputError(f"{path} line {n} column {e.pos + 1}: not JSON ({e.msg})") from None
        if not isinstance(job, dict) or not isinstance(job.get("id"), (str, int)) or isinstance(job["id"], bool) \
                or not ("prompt" in job or "messages" in job):
            raise InputError(f"{path} line {n}: needs an 'id' (a string or an integer) and a 'prompt' or 'messages'")
        if job["id"] in seen:
            raise InputError(f"{path} line {n}: id {job['id']!r} appears twice")
        seen.add(job["id"])
        jobs.append(job)
    return jobs


def finished_ids(out_path):
    """Ids with a result in out_path; an error row does not count (a rerun retries it)."""
    return {i for i, row in read_done(out_path).items() if "error" not in row}


def _value(job, defaults, key, kind, want, optional=False):
    """The line's `key`, else the job's default; None (the adapter's own) only if `optional`."""
    value = job.get(key, defaults.get(key))
    if value is None and optional and key not in job:
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise InputError(f"'{key}' must be {want}, got {value!r}")
    return value


def job_request(job, tokenizer, defaults, chat_template=None):
    """The engine Request of one input line; `defaults` fills what the line leaves out."""
    prompt = job.get("prompt")
    if tokenizer is None and ("messages" in job or not isinstance(prompt, list)):
        raise InputError("this model ships no tokenizer: give 'prompt' as a list of token ids")
    if "messages" in job:
        ids = chat_prompt_ids(tokenizer, job["messages"], chat_template)
    elif isinstance(prompt, list):
        if not all(isinstance(t, Integral) and not isinstance(t, bool) for t in prompt):
            raise InputError("'prompt' as a list must hold token ids (integers)")
        ids = list(prompt)
    elif not isinstance(prompt, str) or not prompt.strip():
        raise InputError("'prompt' must be a non-empty string or a list of token ids")
    else:
        ids = tokenizer.encode(prompt)
    adapter = job.get("adapter", defaults.get("adapter"))
    number = lambda key: _value(job, defaults, key, Real, "a number", optional=True)  # noqa: E731
    alpha, beta = number("alpha"), number("beta")  # None: the expert adapter's own (the engine fills it)
    greedy = beta == 0 or adapter is None
    return Request(ids, adapter=adapter, amateur=None if greedy else job.get("amateur", defaults.get("amateur")),
                   alpha=None if alpha is None else float(alpha), beta=None if beta is None else float(beta),
                   max_new_tokens=_value(job, defaults, "max_tokens", Integral, "an integer"),
                   ignore_eos=bool(defaults.get("ignore_eos")),
                   beta_schedule=_value(job, defaults, "beta_schedule", str, "'fixed' or 'entropy'", optional=True),
                   temperature=float(_value(job, defaults, "temperature", Real, "a number")),
                   top_p=float(_value(job, defaults, "top_p", Real, "a number")),
                   seed=_value(job, defaults, "seed", Integral, "an integer"))


def plan(jobs, tokenizer, defaults, chat_template=None):
    """[(job, its Request, or the message saying why the line cannot run)]."""
    lines = []
    for job in jobs:
        try:
            lines.append((job, job_request(job, tokenizer, defaults, chat_template)))
        except (ColdError, ValueError, TypeError, KeyError) as e:
            lines.append((job, str(e)))
    return lines


class StopOnSignal:
    """SIGINT or SIGTERM during a batch job. While lines run (`running`), the first asks the job
    to stop after the current step (`requested`); at any other time, or the second time, it
    raises KeyboardInterrupt at once. SIGTERM too because MindSpore answers a SIGINT that
    arrives during a graph run by sending its own process SIGTERM."""
    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.running = self.requested = False

    def __enter__(self):
        self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _handle(self, signum, frame):
        if not self.running or self.requested:
            raise KeyboardInterrupt
        self.requested = True


def run_batch(engine, tokenizer, lines, out_path, progress=None, stop=None):
    """Write the error row of every planned line that cannot run, then run the others, appending
    each result as it finishes; a requested stop ends the run after the current step, leaving
    the lines in flight to a rerun. Returns (completed, failed) counts of this run."""
    keep_rows(out_path, lambda row: "error" not in row)  # previous errors are retried
    runnable, failed = [], 0
    with open_for_append(out_path) as out:
        def write(row):
            out.write(json.dumps(row) + "\n")
            out.flush()
            if progress:
                progress.update(1)
        for job, req in lines:
            if not isinstance(req, str):
                try:
                    engine.new_state(len(runnable), req)  # validate before any work
                    runnable.append((job, req))
                    continue
                except (ColdError, ValueError, TypeError, KeyError) as e:
                    req = str(e)
            write({"id": job["id"], "error": req})
            failed += 1
        tokens, completed = [[] for _ in runnable], 0
        if stop:
            stop.running = True
        for ev in engine.stream([req for _, req in runnable]) if runnable else ():
            tokens[ev.index].append(ev.token_id)
            if ev.finish_reason:
                ids, req = tokens[ev.index], runnable[ev.index][1]
                write({"id": runnable[ev.index][0]["id"], "text": tokenizer.decode(ids) if tokenizer else None,
                       "token_ids": ids, "finish_reason": ev.finish_reason,
                       "prompt_tokens": len(req.prompt_ids), "completion_tokens": len(ids)})
                completed += 1
            if stop and stop.requested:
                break
    return completed, failed
