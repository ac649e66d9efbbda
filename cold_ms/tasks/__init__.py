"""Evaluation and training tasks: examples, their splits, and how an answer is scored.

Reasoning (cold_ms.tasks.reasoning): gsm_symbolic, arith, csqa, asdiv, jsonl:PATH.
Learned knowledge (cold_ms.tasks.knowledge): facts (fictional people) and counterfacts
(real facts the base model knows, overridden by training).

Splits: train, validation and test are disjoint where the data allows (each module says
what overlaps); "eval" is the held-out set of the untuned protocol, as before this split
existed. Every score has "correct"; counterfacts adds "base_value" (the answer names the
real-world value the training overrode).
"""
from cold_ms.errors import InputError
from cold_ms.tasks import counterfacts, facts
from cold_ms.tasks.answers import extract_letter, extract_number  # noqa: F401 (the package's API)
from cold_ms.tasks.base import SPLITS, Example, Task  # noqa: F401
from cold_ms.tasks.reasoning import TASKS as _REASONING, jsonl_task

TASKS = dict(_REASONING, facts=Task(facts.build, facts.score),
             counterfacts=Task(counterfacts.build, counterfacts.score))


def _task(name):
    if name.startswith("jsonl:"):
        return jsonl_task(name[len("jsonl:"):])
    if name not in TASKS:
        raise InputError(f"unknown task {name!r}; choose one of {', '.join(TASKS)} or jsonl:PATH")
    return TASKS[name]


def examples(task, split="eval", n=None, seed=None):
    """The task's examples of one split (the first n; all with n=None); `seed` replaces the split's own seed (generated
    tasks) or the seed of the whole task (facts, counterfacts: the same for every split)."""
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if n is not None and n < 1:
        raise InputError(f"n must be at least 1, got {n}")
    return _task(task).build(split, n, seed)


def score(task, prediction, example):
    """{"correct": bool, ...} of one generated answer."""
    return _task(task).score(prediction, example)
