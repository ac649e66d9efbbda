"""alpha/beta chosen on the validation split, then reported once on the test split.

validate() runs expert greedy (for reference) and every grid point on validation,
resumable, picks the setting with the highest validation accuracy and records it in
OUT/choice.json. test() reads that file - the only way a test run is planned - and runs
expert greedy and the chosen setting on test. A rerun resumes both stages; it refuses to
go on when the grid differs from the recorded one, or the recorded choice no longer
follows from the validation results, because test may already have been looked at.
"""
import json
import os
from fractions import Fraction

from cold_ms.distributed import barrier
from cold_ms.errors import ConfigError
from cold_ms.evaluation import Run

ALPHAS = (0.01, 0.05, 0.1, 0.2, 0.5)
BETAS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
TIE_BREAK = "highest validation accuracy; ties go to the smaller beta, then the larger alpha"
EXPERT = Run("expert")


def choose(curve):
    """The best grid point of [result] (by TIE_BREAK): weaker contrast wins a tie, since it
    departs less from greedy."""
    return max(curve, key=lambda r: (Fraction(r["correct"], r["n"]) if r["n"] else -1, -r["beta"], r["alpha"]))


class Tuner:
    """validation, test: Evaluators of the two splits, writing to different directories;
    execute(evaluator, run) runs one run (default: evaluator.run(run)); schedule: of beta, the
    same for every grid point."""

    def __init__(self, validation, test, alphas, betas, out_dir, execute=None, schedule="fixed"):
        shared = {e.question for e in validation.examples} & {e.question for e in test.examples}
        if shared:
            raise ConfigError(f"the validation and test splits share {len(shared)} questions (one --seed for "
                              f"both?): choosing on them would flatter the test result")
        if os.path.abspath(validation.out) == os.path.abspath(test.out):
            raise ConfigError("the validation and test runs need separate directories")
        self.validation, self.test_split = validation, test
        self.grid_axes = {"alpha": list(alphas), "beta": list(betas)}
        self.grid = [Run("cold", a, b, schedule) for a in alphas for b in betas]
        self.schedule = schedule
        self.choice_path = os.path.join(out_dir, "choice.json")
        self.execute = execute or (lambda ev, run: ev.run(run))

    def validate(self):
        """Run the validation stage; returns the choice, recorded in OUT/choice.json."""
        recorded, n = self._recorded(), len(self.validation.examples)
        if recorded is not None and (recorded["grid"], recorded["validation_n"]) != (self.grid_axes, n):
            raise self._changed(recorded, f"grid {self.grid_axes} on {n} validation examples")
        for run in [EXPERT] + self.grid:
            self.execute(self.validation, run)
        best = choose([self.validation.result(run) for run in self.grid])
        choice = {"alpha": best["alpha"], "beta": best["beta"], "validation_accuracy": best["accuracy"],
                  "validation_n": best["n"], "grid": self.grid_axes, "rule": TIE_BREAK}
        if recorded is None:
            if self.validation.world.rank == 0:  # every rank made the same choice from the merged runs
                with open(self.choice_path + ".tmp", "w") as f:
                    json.dump(choice, f, indent=1)
                os.replace(self.choice_path + ".tmp", self.choice_path)  # whole or absent
            barrier()  # recorded before any rank plans its test runs from it
        elif recorded != choice:
            raise self._changed(recorded, f"{_setting(choice)} at {best['accuracy']} from the validation files")
        return choice

    def _changed(self, recorded, now):
        return ConfigError(f"{self.choice_path} records {_setting(recorded)} (grid {recorded['grid']}, "
                           f"{recorded['validation_n']} validation examples), but this run has {now}; the test "
                           f"split may already have been evaluated for the recorded choice: use a new --out")

    def _recorded(self):
        if not os.path.isfile(self.choice_path):
            return None
        with open(self.choice_path) as f:
            return json.load(f)

    def _test_runs(self):
        """Expert greedy and the recorded choice: what the test split may be evaluated for."""
        choice = self._recorded()
        if choice is None:
            raise ConfigError(f"no recorded choice at {self.choice_path}: the validation stage comes first")
        return [EXPERT, Run("cold", choice["alpha"], choice["beta"], self.schedule)]

    def test(self):
        """Run the test stage for the recorded choice."""
        for run in self._test_runs():
            self.execute(self.test_split, run)

    def summary(self):
        """The validation curve, the choice, the test results and the paired tests."""
        runs = self._test_runs()
        val = self.validation.summary([EXPERT] + self.grid)
        test = self.test_split.summary(runs)
        return {"task": val["task"], "adapter": val["adapter"], "amateur": val["amateur"],
                "protocol": "alpha/beta chosen on validation; test evaluated once, for expert greedy and the "
                            "chosen setting", "rule": TIE_BREAK, "grid": self.grid_axes,
                "chosen": {"alpha": runs[1].alpha, "beta": runs[1].beta}, "beta_schedule": self.schedule,
                "validation": {"n": val["n"], "expert": val["results"][0], "curve": val["results"][1:]},
                "test": {"n": test["n"], "results": test["results"],
                         "paired": self.test_split.paired(*runs)}}


def _setting(choice):
    return f"alpha {choice['alpha']:g}, beta {choice['beta']:g}"


def adapter_settings(summary, mask="logit", date=None):
    """(settings, evidence) of a tuned summary for the adapter's cold_config.json. The chosen grid
    point, unless expert greedy scored at least as high on validation: then beta 0 (greedy), since
    no contrast in the grid earned its cost there. The evidence: task, validation n and accuracies
    (greedy and each grid point), the test results, and the date."""
    import datetime
    val = summary["validation"]
    best = choose(val["curve"])
    greedy = val["expert"]["correct"] / val["expert"]["n"] >= best["correct"] / best["n"]
    settings = {"alpha": best["alpha"], "beta": 0.0 if greedy else best["beta"], "mask": mask,
                "beta_schedule": summary.get("beta_schedule", "fixed")}
    evidence = {"task": summary["task"], "amateur": summary["amateur"], "rule": TIE_BREAK + (
                    "; beta 0 when expert greedy is at least as accurate" if greedy else ""),
                "validation_n": val["n"], "validation_accuracy": {
                    "expert_greedy": val["expert"]["accuracy"],
                    **{f"alpha {r['alpha']:g} beta {r['beta']:g}": r["accuracy"] for r in val["curve"]}},
                "test_n": summary["test"]["n"],
                "test_accuracy": {("expert_greedy" if r["mode"] == "expert" else
                                   f"alpha {r['alpha']:g} beta {r['beta']:g}"): r["accuracy"]
                                  for r in summary["test"]["results"]},
                "date": date or datetime.date.today().isoformat()}
    return settings, evidence

