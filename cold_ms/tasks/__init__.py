"""Evaluation and training tasks: examples, their splits, and how an answer is scored.

Reasoning (cold_ms.tasks.reasoning): gsm_symbolic, arith, csqa, asdiv, jsonl:PATH.
Learned knowledge (cold_ms.tasks.knowledge): facts (fictional people) and counterfacts
(real facts the base model knows, overridden by training).

Splits: train, validation and test are disjoint where the data allows (each module says
what overlaps); "eval" is the held-out set of the untuned protocol, as before this split
existed. Every score has "correct"; counterfacts adds "base_value" (the answer names the
real-world value the training overrode).

A knowledge task teaches all its entities unless `facts` (--facts K) keeps the first K;
held_in() draws the probe a training run checks recall on (scripts/train_lora.py
--until-recall).
"""
import random

from cold_ms.errors import InputError
from cold_ms.tasks import counterfacts, facts
from cold_ms.tasks.answers import extract_letter, extract_number  # noqa: F401 (the package's API)
from cold_ms.tasks.base import SPLITS, Example, Task  # noqa: F401
from cold_ms.tasks.knowledge import QA
from cold_ms.tasks.reasoning import TASKS as _REASONING, jsonl_task

TASKS = dict(_REASONING, facts=Task(facts.build, facts.score),
             counterfacts=Task(counterfacts.build, counterfacts.score))
KNOWLEDGE = ("facts", "counterfacts")
PROBE_SEED = 0


def _task(name):
    if name.startswith("jsonl:"):
        return jsonl_task(name[len("jsonl:"):])
    if name not in TASKS:
        raise InputError(f"unknown task {name!r}; choose one of {', '.join(TASKS)} or jsonl:PATH")
    return TASKS[name]


def examples(task, split="eval", n=None, seed=None, facts=None, every_template=False):
    """The task's examples of one split (the first n; all with n=None); `seed` replaces the split's own seed (generated
    tasks) or the seed of the whole task (facts, counterfacts: the same for every split); `facts` (knowledge tasks):
    teach and ask only the first `facts` entities of the seeded order, and with `every_template` ask each validation/test
    fact with every held-out question (knowledge.evaluated)."""
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if n is not None and n < 1:
        raise InputError(f"n must be at least 1, got {n}")
    if facts is None and not every_template:
        return _task(task).build(split, n, seed)
    if task not in KNOWLEDGE:
        flag = "--facts" if facts is not None else "--every-template"
        raise InputError(f"{flag} is for the knowledge tasks ({', '.join(KNOWLEDGE)}), not {task}")
    return _task(task).build(split, n, seed, facts, every_template)


def held_in(training, n):
    """Up to n training questions asked as they were trained (a knowledge task's training
    questions, not its statements; every example of the other tasks): a seeded sample, kept in
    training order. Recall on them says whether the bindings are learned, before any unseen
    template is asked."""
    questions = [e for e in training if not e.template or QA in e.template]
    if n < 1 or not questions:
        raise InputError(f"the probe needs n >= 1 (got {n}) and training questions ({len(questions)})")
    keep = sorted(random.Random(PROBE_SEED).sample(range(len(questions)), min(n, len(questions))))
    return [questions[i] for i in keep]


def score(task, prediction, example):
    """{"correct": bool, ...} of one generated answer."""
    return _task(task).score(prediction, example)
