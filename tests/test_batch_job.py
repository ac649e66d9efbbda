"""infer.py --input-file/--output-file: results as they finish, resumable, every id once."""
import json
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

import numpy_llama as ref
from helpers import run_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _jobs(n):
    jobs = []
    for i in range(n):
        job = {"id": f"q{i}", "prompt": [1, 3 + i, 40, 7 + i]}
        if i % 3 == 1:
            job.update(adapter="all", amateur="qv", alpha=0.2, beta=1.0)
        if i % 3 == 2:
            job.update(beta=0)
        jobs.append(job)
    jobs.append({"id": "bad", "prompt": [1, 2], "adapter": "nope"})
    return jobs


def _cmd(tiny, inp, out, adapters=("qv", "all"), expert="qv", new_tokens=40):
    loaded = [a for name in adapters for a in ("--adapter", f"{name}={tiny['adapter_dir'][name]}")]
    return [sys.executable, os.path.join(ROOT, "scripts", "infer.py"), "--model", tiny["model_dir"], *loaded,
            *(["--expert", expert] if expert else []), "--max-new-tokens", str(new_tokens), "--ignore-eos",
            "--slots", "2", "--input-file", str(inp), "--output-file", str(out)]


def test_interrupted_batch_job_resumes_with_every_id_once(tiny, tmp_path):
    jobs = _jobs(24)
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("".join(json.dumps(j) + "\n" for j in jobs))
    proc = subprocess.Popen(_cmd(tiny, inp, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 4):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = len(out.read_text().splitlines())
    assert 4 <= first < len(jobs), "the job was not interrupted midway"
    rerun = subprocess.run(_cmd(tiny, inp, out), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 1, rerun.stderr  # the line naming adapter 'nope' failed
    assert "1 failed" in rerun.stderr.splitlines()[-1]
    by_id = _rows_once(out, jobs)
    assert "unknown adapter 'nope'" in by_id["bad"]["error"]
    _check_tokens(tiny, jobs[:6], by_id)


def _rows_once(out, jobs):
    """{id: row} of the output file, checking that every job has exactly one row."""
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == sorted(j["id"] for j in jobs)
    return {r["id"]: r for r in rows}


def _check_tokens(tiny, jobs, by_id, new_tokens=40):
    w = lambda n: ref.effective_weights(tiny["weights"], tiny["adapters"].get(n))  # noqa: E731
    for job in jobs:
        if job.get("beta") == 0:
            want = ref.generate(tiny["cfg"], w(job.get("adapter", "qv")), None, job["prompt"], new_tokens)
        elif job.get("adapter") == "all":
            want = ref.generate(tiny["cfg"], w("all"), w("qv"), job["prompt"], new_tokens, 0.2, 1.0)
        else:
            # a line that gives no alpha/beta: its adapter's own (these have no cold_config.json: 0.1, 0.1)
            want = ref.generate(tiny["cfg"], w(job.get("adapter", "qv")), w(None), job["prompt"], new_tokens, 0.1, 0.1)
        assert by_id[job["id"]]["token_ids"] == want, job
        assert by_id[job["id"]]["completion_tokens"] == new_tokens


def test_sigint_stops_cleanly_and_a_rerun_retries_the_failed_lines(tiny, tmp_path):
    """A first run without the 'all' adapter writes error rows for its lines and is interrupted
    with SIGINT; the rerun with the right flags retries exactly those and finishes the rest."""
    jobs = _jobs(24)
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("".join(json.dumps(j) + "\n" for j in jobs))
    proc = subprocess.Popen(_cmd(tiny, inp, out, adapters=("qv",)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 300
    while time.time() < deadline and (not out.exists() or out.read_text().count("token_ids") < 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and stdout == ""
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    errors = [r["id"] for r in rows if "error" in r]
    assert sorted(errors) == sorted(j["id"] for j in jobs if j.get("adapter") in ("all", "nope"))
    assert 3 <= len(rows) - len(errors) < len(jobs) - len(errors), "the job was not interrupted midway"
    assert stderr.strip().splitlines()[-1] == (
        f"cold_ms: interrupted: {len(rows)} results written by this run; {out} holds {len(rows)} of {len(jobs)} "
        f"lines ({len(errors)} errors); rerun the same command to run the other {len(jobs) - len(rows) + len(errors)}")
    code, _, rerun_err = run_main("infer", _cmd(tiny, inp, out)[2:])  # in-process: the fresh rerun is the test's above
    assert code == 1, rerun_err
    by_id = _rows_once(out, jobs)
    assert [i for i, r in by_id.items() if "error" in r] == ["bad"]
    _check_tokens(tiny, [j for j in jobs if j.get("adapter") == "all"][:3], by_id)


def _several(tiny, inp, out, jobs):
    """infer.py's main() in-process (the fresh processes' exit codes are the tests above)."""
    inp.write_text("".join(json.dumps(j) + "\n" for j in jobs))
    code, stdout, stderr = run_main("infer", _cmd(tiny, inp, out, expert=None, new_tokens=6)[2:])
    return SimpleNamespace(returncode=code, stdout=stdout, stderr=stderr)


def test_several_adapters_need_no_expert_when_every_line_names_one(tiny, tmp_path):
    jobs = [{"id": 1, "prompt": [1, 3, 40, 7], "adapter": "qv"},
            {"id": 2, "prompt": [1, 4, 40, 8], "adapter": "all", "amateur": "qv", "alpha": 0.2, "beta": 1.0},
            {"id": 3, "prompt": [1, 5, 40, 9], "adapter": "all", "beta": 0}]
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    done = _several(tiny, inp, out, jobs)
    assert done.returncode == 0, done.stderr
    _check_tokens(tiny, jobs, _rows_once(out, jobs), new_tokens=6)
    unnamed = _several(tiny, inp, tmp_path / "out2.jsonl", jobs + [{"id": "x", "prompt": [1, 2]}])
    assert unnamed.returncode == 2 and unnamed.stderr.strip().splitlines() == [
        "error: several adapters loaded (qv, all) and 1 lines name none (the first: id 'x'): give --expert, "
        "or an 'adapter' on every line"]


def test_embedded_model_serves_the_shipped_adapters(tmp_path, embedded_model, monkeypatch):
    """As the server does: lines may name any shipped adapter; a failed line makes the exit code 1
    (main() in-process on the session's loaded model: the fresh process's exit code 1 is the tests' above)."""
    from cold_ms.formats import model as formats_model
    monkeypatch.setattr(formats_model, "load_model", lambda path=None: embedded_model)
    jobs = [{"id": "a", "prompt": "What is 2 + 3?", "adapter": "arith", "max_tokens": 2},
            {"id": "m", "messages": [{"role": "user", "content": "What is 2 + 3?"}], "adapter": "math",
             "beta": 0, "max_tokens": 2},
            {"id": "bad", "prompt": "What is 2 + 3?", "adapter": "nope"}]
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("".join(json.dumps(j) + "\n" for j in jobs))
    code, _, stderr = run_main("infer", ["--input-file", str(inp), "--output-file", str(out)])
    assert code == 1, stderr
    by_id = _rows_once(out, jobs)
    assert [len(by_id[i]["token_ids"]) for i in "am"] == [2, 2], by_id
    assert by_id["bad"]["error"].startswith("unknown adapter 'nope' (loaded: arith, csqa, math;")


def test_a_line_that_is_not_json_names_its_line_and_column(tmp_path):
    """issue 27, item 11: 'line 4: not JSON (Expecting value: line 2 column 1 ...)' named two lines."""
    from cold_ms.errors import InputError
    from cold_ms.pipeline.batch_job import read_jobs
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": 1, "prompt": "a"}\n\n{"id": 2, "prompt": "b"}\n{"id": 3, "prompt":\n')
    with pytest.raises(InputError) as info:
        read_jobs(str(path))
    assert str(info.value) == f"{path} line 4 column 21: not JSON (Expecting value)"
