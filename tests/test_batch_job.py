"""infer.py --input-file/--output-file: results as they finish, resumable, every id once."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy_llama as ref

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


def _cmd(tiny, inp, out):
    return [sys.executable, os.path.join(ROOT, "scripts", "infer.py"), "--model", tiny["model_dir"],
            "--adapter", f"qv={tiny['adapter_dir']['qv']}", "--adapter", f"all={tiny['adapter_dir']['all']}",
            "--expert", "qv", "--max-new-tokens", "40", "--ignore-eos", "--slots", "2",
            "--input-file", str(inp), "--output-file", str(out)]


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
    assert rerun.returncode == 0, rerun.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == sorted(j["id"] for j in jobs)  # each exactly once
    by_id = {r["id"]: r for r in rows}
    assert "unknown adapter 'nope'" in by_id["bad"]["error"]
    w = lambda n: ref.effective_weights(tiny["weights"], tiny["adapters"].get(n))  # noqa: E731
    for job in jobs[:6]:
        if job.get("beta") == 0:
            want = ref.generate(tiny["cfg"], w("qv"), None, job["prompt"], 40)
        elif job.get("adapter") == "all":
            want = ref.generate(tiny["cfg"], w("all"), w("qv"), job["prompt"], 40, 0.2, 1.0)
        else:
            want = ref.generate(tiny["cfg"], w("qv"), w(None), job["prompt"], 40, 0.1, 0.5)
        assert by_id[job["id"]]["token_ids"] == want, job
        assert by_id[job["id"]]["completion_tokens"] == 40
