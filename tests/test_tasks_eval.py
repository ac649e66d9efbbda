"""Tasks, answer extraction, and scripts/eval.py end to end (resumable)."""
import json
import os
import subprocess

import pytest

from cold_ms import tasks
from cold_ms.errors import InputError
from cold_ms.stats import wilson
from helpers import script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("task", ["gsm_symbolic", "arith", "csqa"])
def test_answer_extraction_on_real_targets(task):
    for ex in tasks.examples(task, "eval", 200):
        assert tasks.score(task, ex.target, ex) == {"correct": True}, ex
    train = {e.question for e in tasks.examples(task, "train", 300)}
    assert not train & {e.question for e in tasks.examples(task, "eval", 600)}


def _questions(rows):
    return {e.question for e in rows}


@pytest.mark.parametrize("task,sizes", [("arith", None), ("csqa", (610, 200, 411)), ("asdiv", (None, 500, 1584))])
def test_validation_is_apart_from_test_and_training(task, sizes):
    val, test = tasks.examples(task, "validation"), tasks.examples(task, "test", 2000)
    assert val and test and not _questions(val) & _questions(test)
    assert not {e.id for e in val} & {e.id for e in test}
    if task != "asdiv":  # 3,000 > the 2,000 kept apart by range: the rest is filtered by question
        train = tasks.examples(task, "train", 3000)
        assert not _questions(train) & (_questions(val) | _questions(test))
    if sizes:
        assert (len(val), len(test)) == sizes[1:]
        assert tasks.examples(task, "eval") == val + test  # the untuned held-out set, as before


def test_training_sets_of_the_shipped_adapters_are_unchanged():
    """adapters/README.md: arith trained on 2,000 problems minus the 314 among the first
    2,000 evaluation problems; validation may not take more."""
    assert len(tasks.examples("arith", "train", 2000)) == 2000 - 314
    assert len(tasks.examples("csqa", "train")) == 610


def test_bad_splits_are_refused(tmp_path):
    with pytest.raises(InputError, match="unknown split"):
        tasks.examples("arith", "dev", 5)
    with pytest.raises(InputError, match="no training split"):
        tasks.examples("asdiv", "train")
    with pytest.raises(InputError, match="without validation and test"):
        tasks.examples(f"jsonl:{tmp_path / 'x.jsonl'}", "validation")
    with pytest.raises(InputError, match="give the number"):
        tasks.examples("gsm_symbolic", "test")


def test_extraction_of_model_style_answers():
    assert tasks.extract_number("4 trays x 12 = 48 muffins; 48 - 29 = 19.\n#### 19") == "19"
    assert tasks.extract_number("The total is 1,250 dollars.") == "1250"
    assert tasks.extract_number("####  -7") == "-7"
    assert tasks.extract_number("no digits here") is None
    assert tasks.score("gsm_symbolic", "so 19.0 are left", tasks.Example("g", "?", "19", "")) == {"correct": True}
    assert tasks.extract_letter("Answer: D. music room") == "D"
    assert tasks.extract_letter("I think the best option is B") == "B"
    assert tasks.score("csqa", "Answer: none", tasks.Example("c", "?", "A", "")) == {"correct": False}


def test_asdiv_keeps_numeric_answers_only():
    rows = tasks.examples("asdiv", n=300)
    assert len(rows) == 300 and all(float(r.gold) == float(r.gold) for r in rows)
    assert rows[0].gold == "9"


def test_wilson_interval():
    lo, hi = wilson(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    assert wilson(0, 10)[0] == 0.0


def _in_process(argv):
    """scripts/eval.py ARGV run in this process (no interpreter start), as a CompletedProcess."""
    import contextlib
    import io
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = script("eval").main(argv)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def _eval(tiny, out, n, extra=()):
    return _in_process(["--model", tiny["model_dir"], "--task", f"jsonl:{tiny['jsonl']}", "--n", str(n),
                        "--adapter", f"qv={tiny['adapter_dir']['qv']}", "--alpha", "0.1", "--beta", "0.5,1.0",
                        "--batch", "2", "--max-new-tokens", "6", "--chat-template", "chatml", "--out", str(out),
                        *extra])


@pytest.fixture(scope="module")
def tiny_jsonl(tiny, tmp_path_factory):
    path = tmp_path_factory.mktemp("jsonl") / "gsm.jsonl"
    rows = [{"question": f"What is {a} plus {a}?", "answer": f"{a} + {a} = {2 * a}\n#### {2 * a}"} for a in range(1, 8)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dict(tiny, jsonl=str(path))


def test_five_example_eval_and_summary_schema(tiny_jsonl, tmp_path):
    out = _eval(tiny_jsonl, tmp_path, 5)
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["task"].startswith("jsonl:") and summary["n"] == 5
    modes = [(r["mode"], r["alpha"], r["beta"]) for r in summary["results"]]
    assert modes == [("base", None, None), ("expert", None, None), ("cold", 0.1, 0.5), ("cold", 0.1, 1.0)]
    for r in summary["results"]:
        assert set(r) >= {"mode", "alpha", "beta", "accuracy", "ci95", "tokens_per_s"}
        assert 0 <= r["ci95"][0] <= r["accuracy"] <= r["ci95"][1] <= 1 and r["n"] == 5
        rows = [json.loads(line) for line in (tmp_path / f"{r['mode'] if r['mode'] != 'cold' else 'cold_a0.1_b' + format(r['beta'], 'g')}.jsonl").read_text().splitlines()]
        assert r["accuracy"] == round(sum(x["correct"] for x in rows) / 5, 4)
    assert (tmp_path / "summary.png").stat().st_size > 0 and "| mode |" in (tmp_path / "summary.md").read_text()


def test_eval_resumes_after_an_interruption(tiny_jsonl, tmp_path):
    assert _eval(tiny_jsonl, tmp_path, 5, ["--modes", "expert"]).returncode == 0
    path = tmp_path / "expert.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3]) + "\n" + lines[3][:10])  # killed while writing line 4
    timing = json.loads((tmp_path / "timing.json").read_text())["expert"]["tokens"]
    out = _eval(tiny_jsonl, tmp_path, 5, ["--modes", "expert"])
    assert out.returncode == 0, out.stderr
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.startswith("{") and x.endswith("}")]
    assert sorted(r["id"] for r in rows) == [f"jsonl-{i}" for i in range(5)]
    assert path.read_text().splitlines()[:3] == lines[:3]  # finished examples were not redone
    new_tokens = json.loads((tmp_path / "timing.json").read_text())["expert"]["tokens"] - timing
    assert new_tokens == sum(r["tokens"] for r in rows[3:])


def _tune(tiny, out, extra=()):
    return _in_process(["--model", tiny["model_dir"], "--task", "facts", "--tune", "--val-n", "3", "--n", "3",
                        "--adapter", f"qv={tiny['adapter_dir']['qv']}", "--alpha", "0.1", "--beta", "0.5,1",
                        "--batch", "2", "--max-new-tokens", "4", "--chat-template", "chatml", "--out", str(out),
                        *extra])


def _ids(path):
    return {json.loads(line)["id"] for line in path.read_text().splitlines()}


def test_tune_end_to_end(tiny, tmp_path):
    out = _tune(tiny, tmp_path)
    assert out.returncode == 0, out.stderr
    choice = json.loads((tmp_path / "choice.json").read_text())
    chosen = f"cold_a0.1_b{choice['beta']:g}.jsonl"
    assert sorted(os.listdir(tmp_path / "validation")) == ["cold_a0.1_b0.5.jsonl", "cold_a0.1_b1.jsonl",
                                                           "expert.jsonl", "timing.json"]
    assert sorted(os.listdir(tmp_path / "test")) == sorted([chosen, "expert.jsonl", "timing.json"])
    val, test = _ids(tmp_path / "validation" / "expert.jsonl"), _ids(tmp_path / "test" / chosen)
    assert len(val) == len(test) == 3 and not val & test
    rows = [json.loads(line) for line in (tmp_path / "test" / chosen).read_text().splitlines()]
    assert all(":ask" in r["template"] and isinstance(r["correct"], bool) for r in rows)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["chosen"] == {"alpha": 0.1, "beta": choice["beta"]}
    assert [r["beta"] for r in summary["validation"]["curve"]] == [0.5, 1.0]
    assert [r["n"] for r in summary["test"]["results"]] == [3, 3] and summary["test"]["paired"]["correct"]["n"] == 3
    assert "Chosen on validation (n=3): alpha 0.1" in out.stdout and (tmp_path / "summary.png").stat().st_size > 0


def test_tune_refuses_a_split(tiny, tmp_path):
    out = _tune(tiny, tmp_path, ["--split", "test"])
    assert out.returncode == 2 and "drop --split" in out.stderr and not os.listdir(tmp_path)
