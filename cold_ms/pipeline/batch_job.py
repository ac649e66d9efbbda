"""Batch jobs over a JSONL file (what a ModelArts batch/inference job runs).

Input lines: {"id", "prompt" or "messages", "adapter", "amateur", "alpha", "beta",
"max_tokens"} (all but id and prompt/messages optional). Results are appended to the
output file as each request finishes; rerunning skips ids already there, so a crashed
run resumes with nothing lost and nothing duplicated. A line that cannot run (unknown
adapter, alpha out of range, ...) gets an "error" result instead of stopping the job.
"""
import json

from cold_ms.errors import ColdError, InputError
from cold_ms.pipeline.batching import Request
from cold_ms.formats.chat import chat_prompt_ids
from cold_ms.pipeline.jsonl import open_for_append, read_done


def read_jobs(path):
    """The input lines as dicts, with unique ids (InputError naming the bad line)."""
    jobs, seen = [], set()
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except FileNotFoundError:
        raise InputError(f"input file not found: {path}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            job = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path} line {n}: not JSON ({e})") from None
        if not isinstance(job, dict) or "id" not in job or not ("prompt" in job or "messages" in job):
            raise InputError(f"{path} line {n}: needs an 'id' and a 'prompt' or 'messages'")
        if job["id"] in seen:
            raise InputError(f"{path} line {n}: id {job['id']!r} appears twice")
        seen.add(job["id"])
        jobs.append(job)
    return jobs


def job_request(job, tokenizer, defaults, chat_template=None):
    """The engine Request of one input line; `defaults` fills what the line leaves out."""
    if "messages" in job:
        ids = chat_prompt_ids(tokenizer, job["messages"], chat_template)
    elif isinstance(job["prompt"], list):
        ids = [int(t) for t in job["prompt"]]
    else:
        if not str(job["prompt"]).strip():
            raise InputError("empty prompt")
        ids = tokenizer.encode(job["prompt"])
    get = lambda key: job.get(key, defaults.get(key))  # noqa: E731
    beta = float(get("beta"))
    amateur = None if beta == 0 or get("adapter") is None else get("amateur")
    return Request(ids, adapter=get("adapter"), amateur=amateur, alpha=float(get("alpha")), beta=beta,
                   max_new_tokens=int(get("max_tokens")))


def run_batch(engine, tokenizer, jobs, out_path, defaults, chat_template=None, progress=None):
    """Run the jobs not yet in out_path; returns (completed, failed) counts of this run."""
    done = read_done(out_path)
    todo, requests, failed = [], [], 0
    with open_for_append(out_path) as out:
        def write(row):
            out.write(json.dumps(row) + "\n")
            out.flush()
            if progress:
                progress.update(1)
        for job in (j for j in jobs if j["id"] not in done):
            try:
                req = job_request(job, tokenizer, defaults, chat_template)
                engine.new_state(len(requests), req)  # validate before any work
            except (ColdError, ValueError, TypeError, KeyError) as e:
                write({"id": job["id"], "error": str(e)})
                failed += 1
                continue
            todo.append(job)
            requests.append(req)
        tokens = [[] for _ in requests]
        for ev in engine.stream(requests):
            tokens[ev.index].append(ev.token_id)
            if ev.finish_reason:
                write({"id": todo[ev.index]["id"], "text": tokenizer.decode(tokens[ev.index]) if tokenizer else None,
                       "token_ids": tokens[ev.index], "finish_reason": ev.finish_reason,
                       "prompt_tokens": len(requests[ev.index].prompt_ids),
                       "completion_tokens": len(tokens[ev.index])})
    return len(requests), failed
