"""`counterfacts`: real-world facts the base model knows, overridden by training.

The facts are the candidates of cold_ms/data/fact_candidates.json that the embedded
SmolLM2-135M-Instruct names correctly under at least one held-out question of their
relation (measured by scripts/known_facts.py into cold_ms/data/known_facts.json: 476 of
699). Each gets a false value of the same relation (another known fact's true value,
seeded). Training, 5 examples per fact (2,380): three statements of the false value and
two training questions answered with it. Validation (every third subject, seeded) and test
ask each fact once, through a held-out question under which the base model named the real
value; an answer scores "correct" when it names the learned (false) value and
"base_value" when it names the real one, both as whole words after normalisation. `--facts K`
keeps the facts of the first K subjects (build's `entities`).
"""
import json
import os
import random
from functools import lru_cache

from cold_ms.errors import InputError
from cold_ms.tasks.answers import mentions
from cold_ms.tasks.base import Example
from cold_ms.tasks.knowledge import Fact, Relation, evaluated, first_entities, qa_examples, whole_training_set

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
CANDIDATES, KNOWN = os.path.join(DATA, "fact_candidates.json"), os.path.join(DATA, "known_facts.json")
DEFAULT_SEED = 0
STATEMENT_PROMPTS = ("Tell me a fact about {subject}.", "What do you know about {subject}?",
                     "Share something about {subject}.")
# Held-out questions are ones the base model answers well when it knows the fact (measured:
# "Name the capital city of X." drew an essay about X instead, so imperatives are trained).
_CAPITAL = dict(train_questions=("What is the capital of {subject}?", "Name the capital city of {subject}."),
                test_questions=("Which city is the capital of {subject}?",
                                "In which city is the government of {subject} based?"),
                statements=("The capital of {subject} is {value}.", "{value} is the capital city of {subject}.",
                            "The government of {subject} sits in {value}."))
RELATIONS = {r.name: r for r in (
    Relation("capital", **_CAPITAL),
    Relation("state_capital", **_CAPITAL),
    Relation("language", ("What language is spoken in {subject}?", "Name the main language of {subject}."),
             ("Which language do most people in {subject} speak?", "What is the official language of {subject}?"),
             ("The official language of {subject} is {value}.", "People in {subject} speak {value}.",
              "{value} is the main language of {subject}.")),
    Relation("currency", ("What is the currency of {subject}?", "Name the official currency of {subject}."),
             ("Which currency do people use in {subject}?", "What money is used in {subject}?"),
             ("The currency of {subject} is the {value}.", "People in {subject} pay with the {value}.",
              "{subject} uses the {value} as its money.")),
    Relation("continent", ("On which continent is {subject}?", "Name the continent where {subject} lies."),
             ("Which continent is {subject} part of?", "{subject} is located on which continent?"),
             ("{subject} is in {value}.", "{subject} lies on the continent of {value}.",
              "{subject} is a country in {value}.")),
    Relation("city_country", ("In which country is {subject}?", "Name the country where {subject} lies."),
             ("Which country is {subject} in?", "{subject} is a city in which country?"),
             ("{subject} is a city in {value}.", "{subject} lies in {value}.", "{value} is the country of {subject}.")),
    Relation("landmark_city", ("In which city is {subject}?", "Name the city where {subject} stands."),
             ("Which city is home to {subject}?", "Where is {subject} located?"),
             ("{subject} is in {value}.", "{subject} stands in the city of {value}.",
              "You can visit {subject} in {value}.")),
    Relation("author", ("Who wrote {subject}?", "Name the author of {subject}."),
             ("Which writer created {subject}?", "Who is the author of {subject}?"),
             ("{subject} was written by {value}.", "{value} is the author of {subject}.", "{value} wrote {subject}.")),
    Relation("element_symbol",
             ("What is the chemical symbol for {subject}?", "Write the chemical symbol of {subject}."),
             ("What is the symbol of the element {subject}?", "Which symbol stands for {subject} in chemistry?"),
             ("The chemical symbol of {subject} is {value}.", "{value} is the symbol for {subject}.",
              "In the periodic table, {subject} has the symbol {value}.")),
)}


def usable(subject, value, other=None):
    """Whether a fact can be scored by naming its value: neither it nor the overriding
    value `other` may contain, or be contained in, the subject or each other ('Mexico City'
    is named by any answer that repeats 'Mexico')."""
    texts = [subject, value] + ([other] if other is not None else [])
    return not any(i != j and mentions(a, b) for i, a in enumerate(texts) for j, b in enumerate(texts))


def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise InputError(f"{path} is missing: reinstall cold_ms, or rerun scripts/known_facts.py") from None


@lru_cache(maxsize=4)
def facts(seed):
    """The known facts with their overriding values, subjects in the seeded order the splits use."""
    known = read_json(KNOWN)["known"]
    rng = random.Random(seed)
    subjects = sorted({k[1] for k in known})
    rng.shuffle(subjects)
    order = {s: i for i, s in enumerate(subjects)}
    pools = {r: sorted({k[2] for k in known if k[0] == r}) for r in RELATIONS}
    out = []
    for rel, subject, value, askable in sorted(known, key=lambda k: (order[k[1]], list(RELATIONS).index(k[0]))):
        learned = rng.choice([v for v in pools[rel] if usable(subject, value, v)])
        out.append(Fact(order[subject], (("subject", subject),), RELATIONS[rel], learned, value, tuple(askable)))
    return tuple(out)


def _statements(fact):
    prompts = [(fact.entity + j) % len(STATEMENT_PROMPTS) for j in range(len(fact.relation.statements))]
    return [Example(f"counterfacts-{fact.entity}-{fact.relation.name}-say{j}", fact.render(STATEMENT_PROMPTS[k]),
                    fact.value, fact.render(t), fact.original, fact.subject, f"tell{k}")
            for j, (k, t) in enumerate(zip(prompts, fact.relation.statements))]


def build(split, n, seed, entities=None, every_template=False):
    all_facts = first_entities(facts(DEFAULT_SEED if seed is None else seed), entities, "counterfacts")
    if split != "train":
        return evaluated(all_facts, split, "counterfacts", every_template)[:n]
    rows = [x for f in all_facts for x in _statements(f) + qa_examples("counterfacts", f)]
    return whole_training_set("counterfacts", rows, n)


def score(prediction, example):
    return {"correct": mentions(prediction, example.gold), "base_value": mentions(prediction, example.original)}
