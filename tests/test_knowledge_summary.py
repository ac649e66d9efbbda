"""Evaluation summaries of knowledge tasks (issue 28): learned-value, base-value and neither
rates, paired counts with exact McNemar p per score, mean generated tokens per answer, against
values worked out by hand; the full alpha x beta grid as --tune's default."""
import json

import pytest

from cold_ms.evaluation import Evaluator, Run
from cold_ms.report import markdown
from cold_ms.tasks import Example
from helpers import script

N = 12
EXPERT, COLD = Run("expert"), Run("cold", 0.1, 0.5)
# expert greedy: no learned value, the real value on items 0-5, 0..11 tokens (mean 5.5)
# CoLD: the learned value on items 0-9, never the real one, 3 tokens each
ROWS = {EXPERT: [{"correct": False, "base_value": i < 6, "tokens": i} for i in range(N)],
        COLD: [{"correct": i < 10, "base_value": False, "tokens": 3} for i in range(N)]}


def _evaluator(tmp_path, task, drop_base=False):
    ev = Evaluator({}, None, task, [Example(f"x{i}", f"q{i}?", "v", "v") for i in range(N)], str(tmp_path), "expert")
    for run, rows in ROWS.items():
        with open(ev.path(run), "w") as f:
            for i, r in enumerate(rows):
                row = {k: v for k, v in r.items() if not (drop_base and k == "base_value")}
                f.write(json.dumps({"id": f"x{i}", **row}) + "\n")
    return ev


def test_counterfacts_summary_rates_pairs_and_tokens(tmp_path):
    s = _evaluator(tmp_path, "counterfacts").summary([EXPERT, COLD])
    expert, cold = s["results"]
    assert (expert["accuracy"], expert["base_value_rate"], expert["neither_rate"], expert["mean_tokens"]) == \
        (0.0, 0.5, 0.5, 5.5)
    assert (cold["accuracy"], cold["base_value_rate"], cold["neither_rate"], cold["mean_tokens"]) == \
        (round(10 / 12, 4), 0.0, round(2 / 12, 4), 3.0)
    assert cold["neither_ci95"][0] < 2 / 12 < cold["neither_ci95"][1]
    pairs = s["paired"]["cold_a0.1_b0.5"]
    # learned value: CoLD alone on 0-9, neither on 10-11: p = 2 / 2^10
    assert pairs["correct"] == {"n": 12, "both": 0, "neither": 2, "only_cold": 10, "only_greedy": 0,
                                "p_value": round(2 / 1024, 6)}
    # real value: greedy alone on 0-5: p = 2 / 2^6
    assert pairs["base_value"] == {"n": 12, "both": 0, "neither": 6, "only_cold": 0, "only_greedy": 6,
                                   "p_value": 0.03125}
    # neither value: greedy on 6-11, CoLD on 10-11: both 2, greedy alone 4 (6-9): p = 2 / 2^4
    assert pairs["neither"] == {"n": 12, "both": 2, "neither": 6, "only_cold": 0, "only_greedy": 4,
                                "p_value": 0.125}
    text = markdown(s)
    assert "| base-value rate | 95% CI | neither rate | 95% CI | tokens/answer |" in text
    assert "| expert | - | - | 12 | 0.0% |" in text and "| 16.7% |" in text and "| 5.5 | - |" in text
    assert "Paired on 12 items, cold_a0.1_b0.5 against expert greedy (base_value): CoLD alone 0, greedy alone 6, " \
           "both 0, neither 6; exact McNemar p = 0.03125." in text


def test_facts_have_no_base_value_and_neither_is_not_learned(tmp_path):
    s = _evaluator(tmp_path, "facts", drop_base=True).summary([EXPERT, COLD])
    expert, cold = s["results"]
    assert "base_value_rate" not in cold and (expert["neither_rate"], cold["neither_rate"]) == (1.0, round(2 / 12, 4))
    assert set(s["paired"]["cold_a0.1_b0.5"]) == {"correct", "neither"}
    assert s["paired"]["cold_a0.1_b0.5"]["neither"]["only_greedy"] == 10


def test_other_tasks_keep_their_summary(tmp_path):
    s = _evaluator(tmp_path, "arith", drop_base=True).summary([Run("base"), COLD])
    assert "paired" not in s  # no expert greedy to pair with
    assert all("neither_rate" not in r for r in s["results"]) and s["results"][1]["mean_tokens"] == 3.0
    assert "neither rate" not in markdown(s)


def test_tune_defaults_to_the_full_grid():
    """--tune without --alpha/--beta: alpha in {0.01, 0.05, 0.1, 0.2, 0.5} x beta in {0.05, 0.1,
    0.25, 0.5, 1, 2}, the 30 points issue 28 asks for."""
    eval_py = script("eval")
    args = eval_py.parse_args(["--task", "facts", "--facts", "30", "--tune", "--adapter", "a", "--out", "o"])
    _, _, alphas, betas = eval_py.plan(args)
    assert (alphas, betas) == ([0.01, 0.05, 0.1, 0.2, 0.5], [0.05, 0.1, 0.25, 0.5, 1.0, 2.0]) and args.facts == 30


@pytest.mark.parametrize("flag", ["--alpha", "--beta"])
def test_a_narrower_grid_is_asked_for_by_name(flag):
    eval_py = script("eval")
    args = eval_py.parse_args(["--task", "facts", "--tune", "--adapter", "a", "--out", "o", flag, "0.1,0.2"])
    _, _, alphas, betas = eval_py.plan(args)
    assert (alphas if flag == "--alpha" else betas) == [0.1, 0.2]
    assert len(betas if flag == "--alpha" else alphas) in (5, 6)


def test_a_tuned_counterfacts_summary_carries_the_new_fields(tmp_path):
    """The tuned summary (tuning.Tuner) reports the same rates, tokens and paired scores on test."""
    from cold_ms.report import tune_markdown, write_tune_summary
    from cold_ms.tuning import Tuner
    val, test = (_evaluator(tmp_path / s, "counterfacts") for s in ("validation", "test"))
    val.examples = [Example(f"x{i}", f"v{i}?", "v", "v") for i in range(N)]  # the splits ask other questions
    tuner = Tuner(val, test, [0.1], [0.5], str(tmp_path))
    tuner.validate()
    tuner.test()
    s = tuner.summary()
    assert [r["mean_tokens"] for r in s["test"]["results"]] == [5.5, 3.0]
    assert [r["neither_rate"] for r in s["test"]["results"]] == [0.5, round(2 / 12, 4)]
    assert set(s["test"]["paired"]) == {"correct", "base_value", "neither"}
    assert s["test"]["paired"]["neither"]["p_value"] == 0.125
    write_tune_summary(s, str(tmp_path))
    assert "(neither): CoLD alone 0, greedy alone 4, both 2, neither 6; exact McNemar p = 0.125." in tune_markdown(s)
