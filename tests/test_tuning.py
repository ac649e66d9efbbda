"""alpha/beta chosen on validation only, test touched once after the choice; McNemar; the
tuned summary's schema and files."""
import json
import os

import pytest

from cold_ms.errors import ConfigError
from cold_ms.evaluation import Evaluator, Run
from cold_ms.report import tune_markdown, write_tune_summary
from cold_ms.stats import mcnemar, paired
from cold_ms.tasks import Example
from cold_ms.tuning import Tuner, choose


def test_mcnemar_against_hand_computed_values():
    assert mcnemar(0, 0) == 1.0
    assert mcnemar(6, 1) == pytest.approx(2 * (1 + 7) / 2 ** 7)            # 0.125
    assert mcnemar(1, 6) == mcnemar(6, 1)
    assert mcnemar(12, 6) == pytest.approx(2 * 31180 / 2 ** 18)            # sum C(18, 0..6) = 31180
    assert mcnemar(10, 0) == pytest.approx(2 / 1024)
    assert mcnemar(5, 5) == 1.0                                           # 2 * 638/1024 capped at 1
    assert 0 < mcnemar(700, 600) < 0.01                                   # large n: no float overflow


def test_paired_counts():
    greedy = {i: {"correct": c} for i, c in enumerate([1, 1, 0, 0, 1, 0])}
    cold = {i: {"correct": c} for i, c in enumerate([1, 0, 1, 1, 1, 0])}
    cold[9] = {"correct": True}  # not in both runs: not paired
    assert paired(greedy, cold) == {"n": 6, "both": 2, "neither": 1, "only_cold": 2, "only_greedy": 1,
                                    "p_value": 1.0}


def _result(alpha, beta, correct, n=10):
    return {"alpha": alpha, "beta": beta, "correct": correct, "n": n}


def test_ties_go_to_the_smaller_beta_then_the_larger_alpha():
    curve = [_result(0.1, 0.5, 7), _result(0.5, 0.25, 7), _result(0.2, 0.25, 7), _result(0.5, 1.0, 6)]
    assert (choose(curve)["alpha"], choose(curve)["beta"]) == (0.5, 0.25)
    assert choose(curve + [_result(0.01, 2.0, 8)])["beta"] == 2.0  # accuracy first


class PlantedEvaluator(Evaluator):
    """An Evaluator whose runs write planted answers instead of generating: run name ->
    number of correct examples (the first ones). Records every run it is asked for, and
    whether the choice file existed at that moment."""

    def __init__(self, out, ids, planted, choice_path):
        examples = [Example(i, f"question {i}?", "x", "x") for i in ids]
        super().__init__({}, None, "planted", examples, out, "expert")
        self.planted, self.choice_path, self.calls = planted, choice_path, []

    def run(self, run, progress=None):
        self.calls.append((run.name, os.path.isfile(self.choice_path)))
        with open(self.path(run), "a") as f:
            for k, ex in enumerate(self.missing(run)):
                f.write(json.dumps({"id": ex.id, "correct": k < self.planted[run.name]}) + "\n")
        return 0, 0.0


GRID = ([0.1, 0.2], [0.5, 1.0])
VALIDATION = {"expert": 5, "cold_a0.1_b0.5": 8, "cold_a0.1_b1": 6, "cold_a0.2_b0.5": 7, "cold_a0.2_b1": 4}
TEST = {"expert": 6, "cold_a0.1_b0.5": 8, "cold_a0.1_b1": 10, "cold_a0.2_b0.5": 10, "cold_a0.2_b1": 10}


def _tuner(tmp_path, grid=GRID, test_ids=None, schedule="fixed"):
    choice = str(tmp_path / "choice.json")
    planted = lambda runs: {k if k == "expert" or schedule == "fixed" else f"{k}_{schedule}": v  # noqa: E731
                            for k, v in runs.items()}
    val = PlantedEvaluator(str(tmp_path / "validation"), [f"v{i}" for i in range(10)], planted(VALIDATION), choice)
    test = PlantedEvaluator(str(tmp_path / "test"), test_ids or [f"t{i}" for i in range(10)], planted(TEST), choice)
    return Tuner(val, test, *grid, str(tmp_path), schedule=schedule), val, test


def test_choice_is_made_on_validation_and_test_runs_only_greedy_and_the_choice(tmp_path):
    tuner, val, test = _tuner(tmp_path)
    with pytest.raises(ConfigError, match="validation stage comes first"):
        tuner.test()
    assert test.calls == []
    assert tuner.validate()["alpha"] == 0.1 and tuner.validate()["beta"] == 0.5  # test would prefer others
    tuner.test()
    assert test.calls == [("expert", True), ("cold_a0.1_b0.5", True)]
    assert sorted(os.listdir(tmp_path / "test")) == ["cold_a0.1_b0.5.jsonl", "expert.jsonl"]
    assert len(os.listdir(tmp_path / "validation")) == 5
    s = tuner.summary()
    assert s["chosen"] == {"alpha": 0.1, "beta": 0.5}
    assert [(r["alpha"], r["beta"], r["accuracy"]) for r in s["validation"]["curve"]] == [
        (0.1, 0.5, 0.8), (0.1, 1.0, 0.6), (0.2, 0.5, 0.7), (0.2, 1.0, 0.4)]
    assert s["validation"]["expert"]["accuracy"] == 0.5
    assert [(r["mode"], r["accuracy"]) for r in s["test"]["results"]] == [("expert", 0.6), ("cold", 0.8)]
    assert s["test"]["paired"] == {"correct": {"n": 10, "both": 6, "neither": 2, "only_cold": 2, "only_greedy": 0,
                                               "p_value": 0.5}}


def test_rerun_resumes_and_refuses_a_changed_grid(tmp_path):
    tuner, val, test = _tuner(tmp_path)
    tuner.validate()
    tuner.test()
    again, val2, _ = _tuner(tmp_path)
    again.validate()
    assert again.summary() == tuner.summary()
    changed, val3, _ = _tuner(tmp_path, grid=([0.1, 0.2], [0.5, 1.0, 2.0]))
    with pytest.raises(ConfigError, match="use a new --out"):
        changed.validate()
    assert val3.calls == []  # refused before running anything


def test_overlapping_splits_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="share 1 questions"):
        _tuner(tmp_path, test_ids=["v3", "t1"])


def test_tuned_summary_files(tmp_path):
    tuner, _, _ = _tuner(tmp_path)
    tuner.validate()
    tuner.test()
    write_tune_summary(tuner.summary(), str(tmp_path))
    s = json.loads((tmp_path / "summary.json").read_text())
    assert set(s) == {"task", "adapter", "amateur", "protocol", "rule", "grid", "chosen", "beta_schedule",
                      "validation", "test"}
    assert set(s["validation"]) == {"n", "expert", "curve"} and set(s["test"]) == {"n", "results", "paired"}
    for r in s["validation"]["curve"] + s["test"]["results"]:
        assert r["ci95"][0] <= r["accuracy"] <= r["ci95"][1]
    text = (tmp_path / "summary.md").read_text()
    assert text == tune_markdown(s)
    assert "alpha 0.1, beta 0.5" in text and "| 0.2 | 70.0% | 40.0% |" in text and "McNemar p = 0.5" in text
    assert (tmp_path / "summary.png").stat().st_size > 10_000


def test_an_adaptive_schedule_is_tuned_in_runs_of_its_own(tmp_path):
    """The entropy schedule's runs are files of their own (never mixed with fixed-beta results
    in one directory), their requests carry the schedule, and the summary names it."""
    tuner, val, test = _tuner(tmp_path, schedule="entropy")
    tuner.validate()
    tuner.test()
    assert test.calls == [("expert", True), ("cold_a0.1_b0.5_entropy", True)]
    s = tuner.summary()
    assert s["beta_schedule"] == "entropy" and s["test"]["results"][1]["beta_schedule"] == "entropy"
    val.prompts = {e.id: [1, 2] for e in val.examples}
    request = val._request(tuner.grid[0], val.examples[0])
    assert (request.beta_schedule, request.beta, request.amateur) == ("entropy", 0.5, "base")
