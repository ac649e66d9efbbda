"""Validated settings travel with the adapter: cold_config.json, written by `eval.py --tune
--save-choice`, is the adapter's default at every front door when a request does not say;
without one, the conservative setting (issue 27, item 3)."""
import json
import os
import shutil
from argparse import Namespace

import pytest

import numpy_llama as ref
from cold_ms import adapter_defaults
from cold_ms.errors import AdapterError
from cold_ms.formats.shipped import shipped_adapters
from cold_ms.pipeline.batching import Request
from cold_ms.tuning import adapter_settings
from helpers import engine_for, script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT = [1, 5, 7, 9, 30]
OWN = {"alpha": 0.2, "beta": 1.0, "mask": "logit", "beta_schedule": "fixed"}


@pytest.fixture(scope="module")
def tuned(tiny, tmp_path_factory):
    """tiny's 'all' adapter copied with a cold_config.json of alpha 0.2, beta 1.0, beside 'qv' (none)."""
    path = str(tmp_path_factory.mktemp("tuned") / "all")
    shutil.copytree(tiny["adapter_dir"]["all"], path)
    adapter_defaults.write(path, OWN, {"task": "made-up", "validation_n": 3})
    return dict(tiny, adapter_dir=dict(tiny["adapter_dir"], all=path))


def _want(tiny, expert, alpha, beta, n=5):
    w = lambda name: ref.effective_weights(tiny["weights"], tiny["adapters"].get(name))  # noqa: E731
    return ref.generate(tiny["cfg"], w(expert), w(None), PROMPT, n, alpha, beta)


def test_the_engine_fills_what_a_request_leaves_out(tuned):
    eng = engine_for(tuned, ("all", "qv"), slots=3)
    got = eng.generate([Request(PROMPT, adapter="all", max_new_tokens=5, ignore_eos=True),
                        Request(PROMPT, adapter="all", beta=0.3, max_new_tokens=5, ignore_eos=True),
                        Request(PROMPT, adapter="qv", max_new_tokens=5, ignore_eos=True)])
    assert got[0].token_ids == _want(tuned, "all", 0.2, 1.0)  # its cold_config.json
    assert got[1].token_ids == _want(tuned, "all", 0.2, 0.3)  # the request's beta, the adapter's alpha
    assert got[2].token_ids == _want(tuned, "qv", 0.1, 0.1)  # no cold_config.json: conservative
    assert got[0].token_ids != _want(tuned, "all", 0.1, 0.1)  # the settings changed the tokens


def test_a_cold_config_is_checked(tmp_path):
    assert adapter_defaults.read(str(tmp_path))["source"].startswith("conservative")
    (tmp_path / "cold_config.json").write_text(json.dumps(dict(OWN, beta=-1)))
    with pytest.raises(AdapterError, match=r"cold_config.json: beta must be >= 0"):
        adapter_defaults.read(str(tmp_path))
    (tmp_path / "cold_config.json").write_text(json.dumps({"alpha": 0.1}))
    with pytest.raises(AdapterError, match="missing beta, mask, beta_schedule"):
        adapter_defaults.read(str(tmp_path))
    (tmp_path / "cold_config.json").write_text("{not json")
    with pytest.raises(AdapterError, match="not readable JSON"):
        adapter_defaults.read(str(tmp_path))


@pytest.mark.parametrize("task", ["math", "arith", "csqa"])
def test_shipped_adapters_carry_their_tuned_choice(task):
    """Each shipped adapter's cold_config.json is what adapter_settings makes of its tuned run; csqa's
    greedy beat every beta on validation (19.0% against at most 18.0%), so its default is beta 0."""
    summary = json.load(open(os.path.join(ROOT, "docs", "results", "eval", "tuned", task, "summary.json")))
    settings, evidence = adapter_settings(summary)
    shipped = json.load(open(os.path.join(shipped_adapters()[task], "cold_config.json")))
    assert {k: shipped[k] for k in adapter_defaults.KEYS} == settings
    assert shipped["evidence"]["validation_n"] == summary["validation"]["n"] == evidence["validation_n"]
    assert shipped["evidence"]["task"] == summary["task"] and shipped["evidence"]["date"]
    assert settings["beta"] == {"math": 0.1, "arith": 0.05, "csqa": 0.0}[task]


def test_infer_cli_settings(tuned):
    """scripts/infer.py: the command line, else the expert's cold_config.json, else conservative."""
    from cold_ms.pipeline.options import apply_defaults
    eng = engine_for(tuned, ("all", "qv"))
    unset = dict(alpha=None, beta=None, mask=None, beta_schedule=None, temperature=0.0, top_p=1.0, seed=0)
    args = Namespace(**unset)
    assert apply_defaults(args, eng.adapters, "all").startswith("cold_config.json")
    assert (args.alpha, args.beta, args.mask, args.beta_schedule) == (0.2, 1.0, "logit", "fixed")
    args = Namespace(**dict(unset, beta=0.7))
    apply_defaults(args, eng.adapters, "qv")
    assert (args.alpha, args.beta) == (0.1, 0.7)


def test_server_settings(tuned):
    """The server: the body's value, else --default-alpha/--default-beta when given, else the adapter's."""
    from cold_ms.serving.app import ServerConfig
    from cold_ms.serving.requests import Served, engine_request
    from cold_ms.serving.schemas import CompletionRequest
    eng = engine_for(tuned, ("all", "qv"))
    served = Served(None, "tiny", ("all", "qv"), 96, 64, None,
                    {n: adapter_defaults.of(eng.adapters, n) for n in ("all", "qv")})
    ask = lambda cfg, **body: engine_request(served, CompletionRequest(  # noqa: E731
        model=body.pop("model", "all"), prompt=PROMPT, max_tokens=3, **body), cfg, False)[0]
    plain = ServerConfig()
    assert (ask(plain).alpha, ask(plain).beta, ask(plain).amateur) == (0.2, 1.0, "base")
    assert (ask(plain, model="qv").alpha, ask(plain, model="qv").beta) == (0.1, 0.1)
    assert ask(plain, beta=0.4).beta == 0.4
    assert ask(ServerConfig(default_beta=0.0)).amateur is None  # the server's default: greedy


def test_mindformers_settings(tuned):
    from cold_ms.pipeline.mindformers import ColdTextGenerationPipeline
    pipe = ColdTextGenerationPipeline(tuned["model_dir"], adapter=f"all={tuned['adapter_dir']['all']}")
    got = pipe.generate_ids([PROMPT], max_new_tokens=5)[0]
    eos = tuned["cfg"]["eos_token_id"]
    want = _want(tuned, "all", 0.2, 1.0)
    assert got == want[:want.index(eos) + 1] if eos in want else got == want


def test_batch_lines_take_their_adapters_settings(tuned):
    from cold_ms.pipeline.batch_job import job_request
    req = job_request({"id": 1, "prompt": PROMPT, "adapter": "all"}, None,
                      {"max_tokens": 4, "amateur": "base", "temperature": 0.0, "top_p": 1.0, "seed": 0})
    assert (req.alpha, req.beta, req.beta_schedule, req.amateur) == (None, None, None, "base")
    filled = adapter_defaults.complete(req, engine_for(tuned, ("all",)).adapters)
    assert (filled.alpha, filled.beta, filled.beta_schedule) == (0.2, 1.0, "fixed")


def test_eval_save_choice(tmp_path, capsys):
    evaluate = script("eval")
    with pytest.raises(SystemExit):
        evaluate.parse_args(["--task", "arith", "--adapter", "arith", "--out", "x", "--save-choice"])
    assert "--save-choice needs --tune" in capsys.readouterr().err
    adapter = tmp_path / "mine"
    adapter.mkdir()
    args = evaluate.parse_args(["--task", "arith", "--adapter", f"mine={adapter}", "--out", "x", "--tune",
                                "--save-choice"])
    summary = json.load(open(os.path.join(ROOT, "docs", "results", "eval", "tuned", "math", "summary.json")))
    evaluate.save_choice(args, summary)
    saved = adapter_defaults.read(str(adapter))
    assert (saved["alpha"], saved["beta"]) == (0.1, 0.1) and "gsm_symbolic" in saved["source"]


def test_the_server_log_line_says_greedy_for_greedy(caplog):
    """issue 27, item 14: a greedy base request was logged as 'amateur=None alpha=0.1 beta=0.5'."""
    import logging
    import time
    from types import SimpleNamespace
    from cold_ms.serving.responses import log_request
    greedy = SimpleNamespace(request=Request(PROMPT, amateur=None), tokens=[5], finish_reason="stop")
    cold = SimpleNamespace(request=Request(PROMPT, adapter="all", alpha=0.2, beta=1.0), tokens=[5], finish_reason="stop")
    with caplog.at_level(logging.INFO, logger="cold_ms.serve"):
        log_request(greedy, "base", time.perf_counter())
        log_request(cold, "all", time.perf_counter())
    first, second = (r.getMessage() for r in caplog.records)
    assert first.startswith("model=base greedy prompt_tokens=5") and "alpha" not in first
    assert second.startswith("model=all amateur=base alpha=0.2 beta=1.0 prompt_tokens=5")
