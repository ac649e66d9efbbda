"""Learned-knowledge tasks: facts taught by training, asked through paraphrases.

A fact is (entity, relation, value). Training states it (statement templates) and asks it
with the relation's training questions, answered with the bare value. Validation and test
ask each fact once, with one of the relation's held-out questions, which no training
example uses. Entities are split, not facts: every third entity (of a seeded random order)
is a validation entity, the others are test entities, and training covers all of them, so
every evaluated fact was trained and validation and test never ask about the same entity.
"""
from collections import Counter
from dataclasses import dataclass
from typing import Tuple

from cold_ms.errors import InputError
from cold_ms.tasks.base import Example

VALIDATION_SHARE = 3  # 1 in 3 entities is a validation entity
QA = ":qa"  # in the template name of a training question ("town:qa0")


@dataclass(frozen=True)
class Relation:
    name: str
    train_questions: Tuple[str, ...]  # training: answered with the bare value
    test_questions: Tuple[str, ...]   # held out: validation and test only
    statements: Tuple[str, ...] = ()  # training: sentences that state the fact ({subject}, {value})


@dataclass(frozen=True)
class Fact:
    entity: int        # index of the entity in the task's shuffled order
    fields: tuple      # (name, text) pairs the templates may use: "subject" and the entity's other facts
    relation: Relation
    value: str         # what training teaches
    original: str = ""  # counterfacts: the real-world value that `value` overrides
    askable: Tuple[int, ...] = ()  # held-out questions it may be asked with (empty: all)

    def render(self, template):
        text = template.format(value=self.value, **dict(self.fields))
        return text[:1].upper() + text[1:]  # "the Eiffel Tower is ..." starts a sentence

    @property
    def subject(self):
        return dict(self.fields)["subject"]


def qa_examples(prefix, fact):
    """Training: each training question of the relation, answered with the value alone."""
    return [Example(f"{prefix}-{fact.entity}-{fact.relation.name}-qa{k}", fact.render(t), fact.value,
                    fact.value, fact.original, fact.subject, f"{fact.relation.name}{QA}{k}")
            for k, t in enumerate(fact.relation.train_questions)]


def askable(fact):
    """The held-out questions `fact` may be asked with (indices into its relation's)."""
    return fact.askable or tuple(range(len(fact.relation.test_questions)))


def question(prefix, fact, k, tag=""):
    """Validation/test: the fact asked with its k-th askable held-out question (cyclically); `tag`
    ends its id (one fact asked several times)."""
    k = askable(fact)[k % len(askable(fact))]
    return Example(f"{prefix}-{fact.entity}-{fact.relation.name}{tag}", fact.render(fact.relation.test_questions[k]),
                   fact.value, fact.value, fact.original, fact.subject, f"{fact.relation.name}:ask{k}")


def first_entities(facts, k, task):
    """The facts of the first k entities of the task's seeded order (all with k=None): a smaller
    task whose splits are the whole task's restricted to those entities (in_split reads the
    entity index), so validation and test stay apart and every evaluated fact stays trained."""
    if k is None:
        return list(facts)
    count = len({f.entity for f in facts})
    if not 1 <= k <= count:
        raise InputError(f"{task}: --facts must be between 1 and {count} (its entities), got {k}")
    return [f for f in facts if f.entity < k]


def in_split(entity, split):
    """Whether entity index `entity` is asked in `split` (train: every entity)."""
    if split == "train":
        return True
    return (entity % VALIDATION_SHARE == 0) == (split == "validation")


def evaluated(facts, split, prefix, every_template=False):
    """The questions of a validation/test split ('eval' means test), one per fact: the held-out
    template turns with the entity and with the fact's place among the entity's facts, so each
    template asks about as many facts of each relation. every_template: each fact asked with
    every held-out question it may be asked with (facts x templates questions, ids ending -askK)."""
    split = "test" if split == "eval" else split
    out, seen = [], Counter()
    for f in facts:
        if in_split(f.entity, split):
            if every_template:
                out += [question(prefix, f, j, f"-ask{k}") for j, k in enumerate(askable(f))]
            else:
                out.append(question(prefix, f, f.entity + seen[f.entity]))
        seen[f.entity] += 1
    return out


def whole_training_set(task, rows, n):
    """All training examples: a cut would leave evaluated facts untrained."""
    if n is not None and n < len(rows):
        raise InputError(f"{task}: train on all {len(rows)} examples (every evaluated fact must be trained); "
                         f"drop --n and set the budget with --epochs or --max-steps")
    return rows
