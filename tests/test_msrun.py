"""Work spread over processes by MindSpore's launcher, msrun, on the tiny fixture: the same
results as one process. Skipped only where msrun is not on PATH (it ships with mindspore;
msrun starts `python` from PATH, so it must be the interpreter running these tests)."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from helpers import run_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MSRUN = shutil.which("msrun")
pytestmark = pytest.mark.skipif(
    MSRUN is None or shutil.which("python") is None
    or os.path.realpath(shutil.which("python")) != os.path.realpath(sys.executable)
    and subprocess.run(["python", "-c", "import cold_ms"], capture_output=True, cwd=ROOT).returncode != 0,
    reason="msrun is not on PATH, or the `python` it would start cannot import cold_ms")
_PORT = [8230 + os.getpid() % 500]


def msrun(tmp_path, script, *args, workers=2, timeout=600):
    """Run scripts/SCRIPT under msrun with `workers` local workers; returns the logs' text."""
    _PORT[0] += 1
    log_dir = tmp_path / f"msrun-{_PORT[0]}"
    out = subprocess.run([MSRUN, "--worker_num", str(workers), "--local_worker_num", str(workers),
                          "--master_port", str(_PORT[0]), "--log_dir", str(log_dir), "--join", "True",
                          os.path.join(ROOT, "scripts", script), *args],
                         capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    logs = "".join(p.read_text() for p in sorted(log_dir.glob("*.log")))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:] + logs[-3000:]
    return logs


@pytest.fixture(scope="module")
def train_file(tmp_path_factory, tiny):
    path = tmp_path_factory.mktemp("dp") / "train.jsonl"
    with open(path, "w") as f:
        for i in range(24):
            f.write(json.dumps({"question": f"what is {i} plus {i + 1}?", "answer": f"it is {2 * i + 1}"}) + "\n")
    return str(path)


def test_two_workers_train_the_adapter_one_worker_trains(tmp_path, tiny, train_file, capsys):
    """Each rank a half of every batch, gradients weighted by answer tokens and summed: after 2
    steps A and B equal the one-process run's up to float summation order (max |diff| within
    1e-5 of the largest value)."""
    from safetensors.numpy import load_file
    args = ["--model", tiny["model_dir"], "--train-file", train_file, "--batch", "4", "--max-steps", "2",
            "--rank", "4", "--lr", "0.01", "--chat-template", "chatml"]
    code, _, err = run_script("train_lora", [*args, "--out", str(tmp_path / "one")], capsys)  # one process: this one
    assert code == 0, err[-2000:]
    logs = msrun(tmp_path, "train_lora.py", *args, "--out", str(tmp_path / "two"))
    assert logs.count("wrote ") == 2  # both ranks finished; rank 0 wrote the adapter
    a, b = load_file(str(tmp_path / "one" / "adapter_model.safetensors")), \
        load_file(str(tmp_path / "two" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    top = max(np.abs(v).max() for v in a.values())
    assert top > 0 and max(np.abs(a[k] - b[k]).max() for k in a) <= 1e-5 * top
    curve = lambda d: (tmp_path / d / "loss.csv").read_text()  # noqa: E731
    assert curve("one") == curve("two")


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    path = tmp_path_factory.mktemp("jobs") / "in.jsonl"
    with open(path, "w") as f:
        for i in range(10):
            f.write(json.dumps({"id": f"q{i}", "prompt": [5, 9, 14 + i, 3], "max_tokens": 3 + i % 4, "beta": 0}) + "\n")
    return str(path)


def _rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_a_batch_job_on_two_workers_writes_what_one_process_writes(tmp_path, tiny, jobs, capsys):
    """Each rank runs every other line into its own part file; rank 0 merges them in input order
    (one process appends in finishing order). One msrun run (its cluster start-up alone idles
    ~15 s) covers a fresh rank and a resumed one: rank 0 starts from nothing, rank 1 from the part a
    kill after three lines left (a cut last line too); every id comes out once, no part is left."""
    args = ["--model", tiny["model_dir"], "--input-file", jobs, "--no-adapter"]
    code, _, err = run_script("infer", [*args, "--output-file", str(tmp_path / "one.jsonl")], capsys)
    assert code == 0, err[-2000:]
    want = sorted(_rows(tmp_path / "one.jsonl"), key=lambda r: int(r["id"][1:]))  # one process: finishing order
    out = tmp_path / "two.jsonl"
    (tmp_path / "two.jsonl.part-1-of-2").write_text("".join(json.dumps(r) + "\n" for r in want[1:6:2]) + '{"id": "q7", "te')
    logs = msrun(tmp_path, "infer.py", *args, "--output-file", str(out))
    assert "merged 10 rows" in logs and _rows(out) == want
    assert not list(tmp_path.glob("two.jsonl.part-*"))


def test_merge_parts_finishes_a_job_whose_rank_0_died(tmp_path, jobs):
    rows = [{"id": f"q{i}", "token_ids": [i]} for i in range(10)]
    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps({"id": "q3", "error": "unknown adapter"}) + "\n")  # retried by the run
    for r in range(2):
        (tmp_path / f"out.jsonl.part-{r}-of-2").write_text("".join(json.dumps(x) + "\n" for x in rows[r::2]))
    done = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "merge_parts.py"), str(out),
                           "--input-file", jobs], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert _rows(out) == rows and not list(tmp_path.glob("out.jsonl.part-*"))


def _without_speed(summary):
    """A summary without its tokens/s, the one field that depends on the process count."""
    if isinstance(summary, dict):
        return {k: _without_speed(v) for k, v in summary.items() if k != "tokens_per_s"}
    return [_without_speed(v) for v in summary] if isinstance(summary, list) else summary


def test_a_tuned_evaluation_on_two_workers_equals_one_process(tmp_path, tiny, capsys):
    """Each rank evaluates every other example of every run; rank 0 merges each run before the
    choice (made over all ranks' validation results) and writes the summary."""
    args = ["--model", tiny["model_dir"], "--task", "facts", "--tune", "--val-n", "4", "--n", "4",
            "--adapter", f"qv={tiny['adapter_dir']['qv']}", "--alpha", "0.1,0.5", "--beta", "1",
            "--batch", "2", "--max-new-tokens", "4", "--chat-template", "chatml"]
    code, _, err = run_script("eval", [*args, "--out", str(tmp_path / "one")], capsys)
    assert code == 0, err[-2000:]
    msrun(tmp_path, "eval.py", *args, "--out", str(tmp_path / "two"))
    summary = lambda d: json.loads((tmp_path / d / "summary.json").read_text())  # noqa: E731
    assert _without_speed(summary("two")) == _without_speed(summary("one"))
    for split in ("validation", "test"):
        files = sorted(p.name for p in (tmp_path / "one" / split).iterdir())
        assert sorted(p.name for p in (tmp_path / "two" / split).iterdir()) == files  # no parts left
        for name in files:
            if name.endswith(".jsonl"):
                assert sorted(_rows(tmp_path / "two" / split / name), key=lambda r: r["id"]) == \
                    sorted(_rows(tmp_path / "one" / split / name), key=lambda r: r["id"])
    timing = json.loads((tmp_path / "two" / "test" / "timing.json").read_text())
    assert timing["expert"]["tokens"] == sum(r["tokens"] for r in _rows(tmp_path / "one" / "test" / "expert.jsonl"))
