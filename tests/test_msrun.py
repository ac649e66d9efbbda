"""Work spread over processes by MindSpore's launcher, msrun, on the tiny fixture: the same
results as one process. Skipped only where msrun is not on PATH (it ships with mindspore;
msrun starts `python` from PATH, so it must be the interpreter running these tests)."""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from helpers import run_main, run_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MSRUN = shutil.which("msrun")
pytestmark = pytest.mark.skipif(
    MSRUN is None or shutil.which("python") is None
    or os.path.realpath(shutil.which("python")) != os.path.realpath(sys.executable)
    and subprocess.run(["python", "-c", "import cold_ms"], capture_output=True, cwd=ROOT).returncode != 0,
    reason="msrun is not on PATH, or the `python` it would start cannot import cold_ms")
_PORT = [8230 + os.getpid() % 500]


def msrun(tmp_path, jobs, workers=2, timeout=900):
    """Run `jobs` ([script name, argv] each) one after another in one msrun cluster of `workers`
    local workers (tests/msrun_jobs.py); returns {script name: the text its runs logged}."""
    _PORT[0] += 1
    log_dir, jobs_file = tmp_path / f"msrun-{_PORT[0]}", tmp_path / "jobs.json"
    jobs_file.write_text(json.dumps(jobs))
    out = subprocess.run([MSRUN, "--worker_num", str(workers), "--local_worker_num", str(workers),
                          "--master_port", str(_PORT[0]), "--log_dir", str(log_dir), "--join", "True",
                          os.path.join(ROOT, "tests", "msrun_jobs.py"), str(jobs_file)],
                         capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    logs = {p.name: p.read_text() for p in sorted(log_dir.glob("*.log"))}
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:] + "".join(logs.values())[-3000:]
    by_job = {}
    for text in logs.values():  # each rank's log: its jobs' lines, each after the job's marker line
        for part in re.split(r"^msrun_jobs: ", text, flags=re.M)[1:]:
            name, _, rest = part.partition("\n")
            by_job[name] = by_job.get(name, "") + rest
    return by_job


def _train_args(tiny, train_file):
    return ["--model", tiny["model_dir"], "--train-file", train_file, "--batch", "4", "--max-steps", "2",
            "--rank", "4", "--lr", "0.01", "--chat-template", "chatml"]


def _infer_args(tiny, jobs):
    return ["--model", tiny["model_dir"], "--input-file", jobs, "--no-adapter"]


def _eval_args(tiny):
    return ["--model", tiny["model_dir"], "--task", "facts", "--tune", "--val-n", "4", "--n", "4",
            "--adapter", f"qv={tiny['adapter_dir']['qv']}", "--alpha", "0.1,0.5", "--beta", "1",
            "--batch", "2", "--max-new-tokens", "4", "--chat-template", "chatml"]


def _rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def train_file(tmp_path_factory, tiny):
    path = tmp_path_factory.mktemp("dp") / "train.jsonl"
    with open(path, "w") as f:
        for i in range(24):
            f.write(json.dumps({"question": f"what is {i} plus {i + 1}?", "answer": f"it is {2 * i + 1}"}) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    path = tmp_path_factory.mktemp("jobs") / "in.jsonl"
    with open(path, "w") as f:
        for i in range(10):
            f.write(json.dumps({"id": f"q{i}", "prompt": [5, 9, 14 + i, 3], "max_tokens": 3 + i % 4, "beta": 0}) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, tiny, train_file, jobs):
    """One msrun run (its cluster start-up alone idles ~15 s) of the three jobs the tests below
    compare with one process: a training run, a batch job resumed on rank 1, a tuned evaluation.
    Returns (its folder, {script: what its runs logged}, the batch job's one-process rows)."""
    root = tmp_path_factory.mktemp("msrun")  # first the batch job's one-process reference
    code, _, err = run_main("infer", [*_infer_args(tiny, jobs), "--output-file", str(root / "one.jsonl")])
    assert code == 0, err[-2000:]
    want = sorted(_rows(root / "one.jsonl"), key=lambda r: int(r["id"][1:]))  # one process: finishing order
    # rank 1 resumes from the part a kill after three lines left (a cut last line too)
    (root / "two.jsonl.part-1-of-2").write_text("".join(json.dumps(r) + "\n" for r in want[1:6:2]) + '{"id": "q7", "te')
    logs = msrun(root, [["train_lora", [*_train_args(tiny, train_file), "--out", str(root / "train")]],
                        ["infer", [*_infer_args(tiny, jobs), "--output-file", str(root / "two.jsonl")]],
                        ["eval", [*_eval_args(tiny), "--out", str(root / "eval")]]])
    return root, logs, want


def test_two_workers_train_the_adapter_one_worker_trains(tmp_path, tiny, train_file, cluster, capsys):
    """Each rank a half of every batch, gradients weighted by answer tokens and summed: after 2
    steps A and B equal the one-process run's up to float summation order (max |diff| within
    1e-5 of the largest value)."""
    from safetensors.numpy import load_file
    root, logs, _ = cluster
    code, _, err = run_script("train_lora", [*_train_args(tiny, train_file), "--out", str(tmp_path / "one")], capsys)
    assert code == 0, err[-2000:]
    assert logs["train_lora"].count("wrote ") == 2  # both ranks finished; rank 0 wrote the adapter
    a, b = load_file(str(tmp_path / "one" / "adapter_model.safetensors")), \
        load_file(str(root / "train" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    top = max(np.abs(v).max() for v in a.values())
    assert top > 0 and max(np.abs(a[k] - b[k]).max() for k in a) <= 1e-5 * top
    assert (tmp_path / "one" / "loss.csv").read_text() == (root / "train" / "loss.csv").read_text()


def test_a_batch_job_on_two_workers_writes_what_one_process_writes(cluster):
    """Each rank runs every other line into its own part file; rank 0 merges them in input order
    (one process appends in finishing order). The run covers a fresh rank and a resumed one:
    rank 0 starts from nothing, rank 1 from the part a kill after three lines left (a cut last
    line too); every id comes out once, no part is left."""
    root, logs, want = cluster
    assert "merged 10 rows" in logs["infer"] and _rows(root / "two.jsonl") == want
    assert not list(root.glob("two.jsonl.part-*"))


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


def test_a_tuned_evaluation_on_two_workers_equals_one_process(tmp_path, tiny, cluster, capsys):
    """Each rank evaluates every other example of every run; rank 0 merges each run before the
    choice (made over all ranks' validation results) and writes the summary."""
    root, _, _ = cluster
    one, two = tmp_path / "one", root / "eval"
    code, _, err = run_script("eval", [*_eval_args(tiny), "--out", str(one)], capsys)
    assert code == 0, err[-2000:]
    summary = lambda d: json.loads((d / "summary.json").read_text())  # noqa: E731
    assert _without_speed(summary(two)) == _without_speed(summary(one))
    for split in ("validation", "test"):
        files = sorted(p.name for p in (one / split).iterdir())
        assert sorted(p.name for p in (two / split).iterdir()) == files  # no parts left
        for name in files:
            if name.endswith(".jsonl"):
                assert sorted(_rows(two / split / name), key=lambda r: r["id"]) == \
                    sorted(_rows(one / split / name), key=lambda r: r["id"])
    timing = json.loads((two / "test" / "timing.json").read_text())
    assert timing["expert"]["tokens"] == sum(r["tokens"] for r in _rows(one / "test" / "expert.jsonl"))
