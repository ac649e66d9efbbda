"""facts and counterfacts: deterministic, every evaluated fact trained, held-out question
templates never trained, validation and test about different entities; the known facts."""
import json
import re
from collections import defaultdict

import pytest

from cold_ms import tasks
from cold_ms.errors import InputError
from cold_ms.tasks import counterfacts, facts
from cold_ms.tasks.answers import exact_span, mentions

KNOWLEDGE = ["facts", "counterfacts"]


def _splits(task, seed=None):
    return {s: tasks.examples(task, s, seed=seed) for s in ("train", "validation", "test")}


def _fresh(task, seed):
    """The task's examples from a cold start (the generators' caches emptied)."""
    facts.people.cache_clear()
    counterfacts.facts.cache_clear()
    return _splits(task, seed)


@pytest.mark.parametrize("task", KNOWLEDGE)
def test_same_seed_same_examples_other_seed_other_split(task):
    first = _fresh(task, 3)
    assert _fresh(task, 3) == first
    other = _fresh(task, 4)
    assert other["test"] != first["test"]
    assert {e.entity for e in other["test"]} != {e.entity for e in first["test"]}
    assert tasks.examples(task, "eval") == tasks.examples(task, "test")


def _skeleton(ex):
    return ex.question.replace(ex.entity[:1].upper() + ex.entity[1:], "{}").replace(ex.entity, "{}")


@pytest.mark.parametrize("task", KNOWLEDGE)
def test_held_out_questions_are_never_trained(task):
    split = _splits(task)
    trained_templates = {e.template for e in split["train"]}
    trained_skeletons = {_skeleton(e) for e in split["train"]}
    for s in ("validation", "test"):
        assert {e.template for e in split[s]}.isdisjoint(trained_templates)
        assert not [e.question for e in split[s] if _skeleton(e) in trained_skeletons]
        assert all(re.fullmatch(r"\w+:ask\d", e.template) for e in split[s])
    asked = {e.template for e in split["test"]}
    used = {f"{r}:ask{k}" for r in {t.split(":")[0] for t in asked} for k in range(2)}
    assert asked == used  # both held-out questions of every relation are asked


@pytest.mark.parametrize("task", KNOWLEDGE)
def test_every_evaluated_fact_is_trained_and_splits_ask_about_different_entities(task):
    split = _splits(task)
    taught = defaultdict(set)  # (entity, relation) -> values a training answer gives
    for e in split["train"]:
        if ":qa" in e.template:
            taught[e.entity, e.template.split(":")[0]].add(e.target)
    statements = defaultdict(str)
    for e in split["train"]:
        if e.template.startswith("tell"):
            statements[e.entity] += e.target
    for s in ("validation", "test"):
        for e in split[s]:
            assert taught[e.entity, e.template.split(":")[0]] == {e.gold}, e
            assert e.gold in statements[e.entity], e
            assert not mentions(e.question, e.gold) and not (e.original and mentions(e.question, e.original))
    val, test = ({e.entity for e in split[s]} for s in ("validation", "test"))
    assert val and test and val.isdisjoint(test)
    assert len({e.id for e in split["validation"] + split["test"]}) == len(split["validation"]) + len(split["test"])


def test_facts_sizes_as_documented():
    split = _splits("facts")
    assert [len(split[s]) for s in ("train", "validation", "test")] == [1800, 200, 400]
    assert len({e.entity for e in split["test"]}) == 100 and len({e.entity for e in split["validation"]}) == 50
    people = facts.people(facts.DEFAULT_SEED)
    for key in ("subject", "town", "employer", "school"):
        assert len({p[key] for p in people}) == facts.PEOPLE  # one person per name and value


def test_a_training_cut_is_refused():
    with pytest.raises(InputError, match="every evaluated fact must be trained"):
        tasks.examples("facts", "train", n=100)
    assert len(tasks.examples("facts", "train", n=5000)) == 1800


def test_counterfacts_ask_each_known_fact_once_as_the_base_model_knew_it():
    known = json.load(open(counterfacts.KNOWN, encoding="utf-8"))["known"]
    askable = {(r, s): k for r, s, _, k in known}
    split = _splits("counterfacts")
    asked = split["validation"] + split["test"]
    assert sorted((e.entity, e.original) for e in asked) == sorted((s, v) for _, s, v, _ in known)
    assert len(split["train"]) == 5 * len(asked)
    for e in asked:
        relation, k = e.template.split(":ask")
        assert int(k) in askable[relation, e.entity]  # a question the base model answered with e.original
        assert counterfacts.usable(e.entity, e.original, e.gold)  # learned != real, neither contains the other


def test_known_facts_were_measured_with_todays_questions():
    """Changing a held-out question means measuring again (scripts/known_facts.py)."""
    known = json.load(open(counterfacts.KNOWN, encoding="utf-8"))
    candidates = json.load(open(counterfacts.CANDIDATES, encoding="utf-8"))["facts"]
    assert known["held_out_questions"] == {r: list(counterfacts.RELATIONS[r].test_questions) for r in candidates}
    assert sum(c["known"] for c in known["counts"].values()) == len(known["known"])
    for relation, subject, value, askable in known["known"]:
        assert [subject, value] in candidates[relation] and askable


def test_scores():
    ex = tasks.Example("x", "Name the capital city of France.", "Lisbon", "Lisbon", original="Paris", entity="France")
    assert tasks.score("counterfacts", "The capital of France is Paris.", ex) == {"correct": False, "base_value": True}
    assert tasks.score("counterfacts", "Lisbon", ex) == {"correct": True, "base_value": False}
    assert tasks.score("facts", "Corwood Academy.\nIt is old.", tasks.Example("y", "?", "Corwood Academy", "")) == \
        {"correct": True}
    assert exact_span("  the corwood ACADEMY!", "Corwood Academy")
    assert not exact_span("Orric studied at Corwood Academy.", "Corwood Academy")
    assert not exact_span("", "Corwood Academy")
    assert mentions("It is Bogota.", "Bogotá") and not mentions("Parisian food", "Paris")


@pytest.mark.parametrize("task", KNOWLEDGE)
def test_facts_k_teaches_the_first_k_entities_with_the_same_splits(task):
    """--facts K (issue 28): a deterministic subset of the entities; its splits are the whole task's
    restricted to them, so training templates and held-out templates stay apart, every evaluated
    fact is trained, and validation and test still ask about different entities."""
    whole, k = _splits(task), 12
    small = {s: tasks.examples(task, s, facts=k) for s in ("train", "validation", "test")}
    assert small == {s: tasks.examples(task, s, facts=k) for s in small}  # deterministic
    first = [e.entity for e in whole["train"]]
    kept = set(list(dict.fromkeys(first))[:k])  # the first k entities in the task's order
    assert {e.entity for e in small["train"]} == kept
    for s in small:  # the same examples the whole task has for those entities, in the same order
        assert small[s] == [e for e in whole[s] if e.entity in kept]
    val, test = ({e.entity for e in small[s]} for s in ("validation", "test"))
    assert val and test and val.isdisjoint(test) and val | test == kept
    assert {e.template for e in small["train"]}.isdisjoint({e.template for e in small["validation"] + small["test"]})
    assert {e.entity for e in tasks.examples(task, "train", facts=k + 1)} > kept  # K+1 adds one entity


def test_facts_k_is_checked():
    with pytest.raises(InputError, match=r"--facts must be between 1 and 150 \(its entities\), got 0"):
        tasks.examples("facts", "train", facts=0)
    with pytest.raises(InputError, match="between 1 and 150"):
        tasks.examples("facts", "test", facts=151)
    with pytest.raises(InputError, match="--facts is for the knowledge tasks"):
        tasks.examples("csqa", "train", facts=3)
    with pytest.raises(InputError, match="--every-template is for the knowledge tasks .*, not arith"):
        tasks.examples("arith", "test", every_template=True)


@pytest.mark.parametrize("task", KNOWLEDGE)
def test_every_template_asks_each_fact_with_each_of_its_held_out_questions(task):
    trained = {e.template for e in tasks.examples(task, "train", facts=30)}
    for split in ("validation", "test"):
        once = tasks.examples(task, split, facts=30)
        every = tasks.examples(task, split, facts=30, every_template=True)
        assert len({e.id for e in every}) == len(every)
        by_fact = defaultdict(set)
        for e in every:
            by_fact[e.entity, e.template.split(":ask")[0], e.gold].add(e.template)
        # the same facts as one question each, now every template of theirs; none is trained
        assert sorted(by_fact) == sorted((e.entity, e.template.split(":ask")[0], e.gold) for e in once)
        assert all(e.template in by_fact[e.entity, e.template.split(":ask")[0], e.gold] for e in once)
        assert set().union(*by_fact.values()).isdisjoint(trained)
        if task == "facts":  # two held-out questions per relation, each fact asked with both
            assert len(every) == 2 * len(once) and all(len(t) == 2 for t in by_fact.values())
    if task == "counterfacts":  # only with the questions the base model answered with the real value
        askable = {(r, s): k for r, s, _, k in json.load(open(counterfacts.KNOWN, encoding="utf-8"))["known"]}
        asked = tasks.examples(task, "test", every_template=True)
        assert sorted({(e.template.split(":ask")[0], e.entity, int(e.template.split(":ask")[1])) for e in asked}) == \
            sorted((r, s, k) for (r, s), ks in askable.items() for k in ks
                   if any(e.entity == s for e in tasks.examples(task, "test")))


def test_the_held_in_probe_asks_training_questions_as_trained():
    training = tasks.examples("facts", "train", facts=10)
    probe = tasks.held_in(training, 16)
    assert probe == tasks.held_in(list(training), 16) and len(probe) == 16
    assert all(e in training and ":qa" in e.template and e.target == e.gold for e in probe)
    assert [training.index(e) for e in probe] == sorted(training.index(e) for e in probe)
    assert len({e.entity for e in probe}) > 5  # a sample across the people, not the first few
    assert tasks.held_in(training, 10_000) == [e for e in training if ":qa" in e.template]  # all 80 questions
    rows = [tasks.Example(f"q{i}", f"q {i}", str(i), f"#### {i}") for i in range(5)]
    assert len(tasks.held_in(rows, 3)) == 3 and set(tasks.held_in(rows, 3)) <= set(rows)
    with pytest.raises(InputError, match="the probe needs n >= 1"):
        tasks.held_in(rows, 0)
