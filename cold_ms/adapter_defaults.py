"""An adapter's own CoLD settings: validated on a task, they travel with it as
`cold_config.json` in its directory, and are its defaults wherever a request does not say.

    {"alpha": 0.1, "beta": 0.1, "mask": "logit", "beta_schedule": "fixed",
     "evidence": {"task": ..., "validation_n": ..., "validation_accuracy": {...}, "date": ...}}

`scripts/eval.py --tune --save-choice` writes it. An adapter without one gets CONSERVATIVE:
alpha 0.1, beta 0.1. Why that: the tuned runs (docs/results/eval/tuned) swept beta at alpha
0.1 on math, arith and csqa; validation accuracy fell as beta grew on all three (beta 0.5:
-1.0, -1.2 and -2.5 points against expert greedy; beta 2: -8.0, -3.8 and -1.5), while beta
0.1 stayed within 1.5 points of greedy (+1.0, 0.0, -1.5). A small beta keeps the contrast on
without the losses the larger ones showed; 0 (expert greedy) is always one request away.
"""
import json
import os
from dataclasses import replace

from cold_ms.config import ChoiceParams, ColdParams
from cold_ms.errors import AdapterError, ColdError

FILE = "cold_config.json"
CONSERVATIVE = {"alpha": 0.1, "beta": 0.1, "mask": "logit", "beta_schedule": "fixed"}
KEYS = tuple(CONSERVATIVE)


def check(settings, where):
    """`settings` (the four KEYS) validated; an AdapterError naming `where` otherwise."""
    missing = [k for k in KEYS if k not in settings]
    if missing:
        raise AdapterError(f"{where}: missing {', '.join(missing)}")
    try:
        ColdParams(settings["alpha"], settings["beta"], settings["mask"])
        ChoiceParams(settings["beta_schedule"])
    except ColdError as e:
        raise AdapterError(f"{where}: {e}") from None
    return {k: settings[k] for k in KEYS}


def read(adapter_dir):
    """The settings of the adapter at `adapter_dir` ({KEYS..., "source"}), CONSERVATIVE when it has
    no cold_config.json; an AdapterError for one that is not valid."""
    path = os.path.join(adapter_dir, FILE)
    if not os.path.isfile(path):
        return dict(CONSERVATIVE, source="conservative default (no cold_config.json)")
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, ValueError) as e:
        raise AdapterError(f"{path}: not readable JSON ({e})") from None
    if not isinstance(raw, dict):
        raise AdapterError(f"{path}: expected a JSON object")
    evidence = raw.get("evidence") or {}
    source = f"{FILE}" + (f" (tuned on {evidence['task']}, validation n={evidence.get('validation_n')})"
                          if "task" in evidence else "")
    return dict(check(raw, path), source=source)


def write(adapter_dir, settings, evidence):
    """Write cold_config.json (settings + evidence) into `adapter_dir`, atomically."""
    body = dict(check(settings, "cold_config"), evidence=evidence)
    path = os.path.join(adapter_dir, FILE)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(body, f, indent=1)
        f.write("\n")
    os.replace(path + ".tmp", path)
    return path


def of(adapters, name):
    """The defaults of adapter `name` in registry `adapters` (CONSERVATIVE for the base model or
    an adapter made in memory)."""
    if name in (None, "base") or name not in adapters.names:
        return dict(CONSERVATIVE, source="conservative default")
    return adapters.defaults(name) or dict(CONSERVATIVE, source="conservative default")


def complete(request, adapters):
    """`request` with each of alpha, beta, beta_schedule it leaves None taken from its expert's
    defaults (the Python API's and batch jobs' rule; the CLI and server apply the same)."""
    unset = {k: v for k, v in of(adapters, request.adapter).items()
             if k in ("alpha", "beta", "beta_schedule") and getattr(request, k, 0) is None}
    return replace(request, **unset) if unset else request

