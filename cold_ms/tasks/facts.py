"""`facts`: fictional people whose birth town, employer, birth year and college no base
model can know; an adapter learns them from statements and question/answer pairs.

150 people from a seeded generator (50 validation, 100 test: 200 and 400 questions), four
facts each, 600 facts in all. Training, 12 examples per person (1,800): four statements of
two facts each (every fact stated twice, in different company and order), and two
training questions per fact answered with the bare value. Validation and test ask each
fact once through a held-out question (one of two per relation; one of the two names
another of the person's facts first); scoring is exact match of the answer's first line
after normalisation. `--facts K` keeps the first K people (build's `entities`).
"""
import random
from functools import lru_cache
from itertools import product

from cold_ms.tasks.answers import exact_span
from cold_ms.tasks.base import Example
from cold_ms.tasks.knowledge import Fact, Relation, evaluated, first_entities, qa_examples, whole_training_set

PEOPLE, DEFAULT_SEED = 150, 0
# Invented name parts: the combinations are nobody a pretraining corpus describes.
FIRST = (("Al", "Bri", "Cor", "Da", "El", "Fen", "Ga", "Hal", "Is", "Jo", "Ka", "Lo", "Mi", "Ne", "Or",
          "Pe", "Qui", "Ro", "Sa", "Te", "Ul", "Va", "Wy", "Ye", "Za"),
         ("ric", "na", "vin", "len", "mo", "ra", "dis", "tan", "wen", "lia", "ro", "sel", "mir", "da", "nor"))
SURNAME = (("Brem", "Cald", "Dorn", "Esk", "Fal", "Gret", "Harl", "Ims", "Jask", "Kell", "Lund", "Mor",
            "Nask", "Orv", "Pell", "Quist", "Rask", "Stol", "Tarv", "Ulm", "Vand", "Wex", "Yarn", "Zell"),
           ("ow", "ick", "ley", "ner", "sby", "holm", "ett", "ard", "ing", "ant"))
TOWN = (("Ash", "Bryn", "Corm", "Dusk", "Elm", "Fird", "Glen", "Hollin", "Ivy", "Kest", "Lark", "Marl",
         "Nether", "Oak", "Pim", "Quill", "Rook", "Sedge", "Thorn", "Wold"),
        ("holt", "mere", "wick", "ford", "stead", "bury", "vale", "moor", "by", "thorpe"))
COMPANY = (("Vir", "Quor", "Zent", "Plex", "Nov", "Trel", "Brix", "Cyr", "Dax", "Ormi", "Lumi", "Fenn",
            "Jov", "Krel", "Myr", "Syl"), ("ex", "on", "ia", "ar", "ix", "um"),
           ("Labs", "Foods", "Motors", "Textiles", "Logistics", "Press", "Robotics", "Mills", "Optics",
            "Shipping"))
COLLEGE = (("Hal", "Wen", "Mar", "Bel", "Cor", "Lin", "Ros", "Ther", "Aber", "Dun", "Kil", "Tre"),
           ("wood", "field", "ridge", "brook", "stone", "crest"), ("College", "Institute", "Academy"))
YEARS = (1921, 1999)

RELATIONS = (
    Relation("town", ("Where was {subject} born?", "In which town was {subject} born?"),
             ("What is the birthplace of {subject}?", "{subject}, who works for {employer}, comes from which town?")),
    Relation("employer", ("Who does {subject} work for?", "Which company employs {subject}?"),
             ("What is the name of {subject}'s employer?", "{subject}, born in {year}, is employed by which company?")),
    Relation("year", ("When was {subject} born?", "In what year was {subject} born?"),
             ("What is {subject}'s year of birth?", "{subject} from {town} was born in which year?")),
    Relation("school", ("Where did {subject} study?", "Which college did {subject} attend?"),
             ("Which school did {subject} graduate from?",
              "{subject}, born in {town}, is a graduate of which institution?")),
)
BIO_PROMPTS = ("Tell me about {subject}.", "Who is {subject}?", "Describe {subject}.")
# Two facts per statement, each fact in two statements with different partners and places:
# whole biographies made the longest example 86 tokens, and the trainer pads every batch
# to the longest (128 instead of 64 tokens: twice the work per step).
BIOS = ("{subject} was born in {town} in {year}.", "{subject} works for {employer} and studied at {school}.",
        "A graduate of {school}, {subject} hails from {town}.", "Born in {year}, {subject} is now at {employer}.")


def _draw(rng, parts, k, join):
    """k distinct random combinations of the parts."""
    return [join(c) for c in rng.sample(list(product(*parts)), k)]


@lru_cache(maxsize=4)
def people(seed):
    """PEOPLE dicts {subject, town, employer, year, school}, distinct names, towns, employers
    and colleges (years repeat), in the seeded random order the splits use."""
    rng = random.Random(seed)
    names = _draw(rng, (FIRST[0], FIRST[1], SURNAME[0], SURNAME[1]), PEOPLE, lambda c: f"{c[0]}{c[1]} {c[2]}{c[3]}")
    towns = _draw(rng, TOWN, PEOPLE, "".join)
    companies = _draw(rng, COMPANY, PEOPLE, lambda c: f"{c[0]}{c[1]} {c[2]}")
    colleges = _draw(rng, COLLEGE, PEOPLE, lambda c: f"{c[0]}{c[1]} {c[2]}")
    return tuple({"subject": names[i], "town": towns[i], "employer": companies[i], "school": colleges[i],
                  "year": str(rng.randint(*YEARS))} for i in range(PEOPLE))


def _facts(seed):
    return [Fact(e, tuple(p.items()), r, p[r.name]) for e, p in enumerate(people(seed)) for r in RELATIONS]


def _bios(e, person):
    prompts = [(e + j) % len(BIO_PROMPTS) for j in range(len(BIOS))]
    return [Example(f"facts-{e}-bio{j}", BIO_PROMPTS[k].format(**person), BIOS[j].format(**person),
                    BIOS[j].format(**person), entity=person["subject"], template=f"tell{k}")
            for j, k in enumerate(prompts)]


def build(split, n, seed, entities=None, every_template=False):
    seed = DEFAULT_SEED if seed is None else seed
    taught = first_entities(_facts(seed), entities, "facts")
    if split != "train":
        return evaluated(taught, split, "facts", every_template)[:n]
    rows = [x for e, p in enumerate(people(seed)[:entities]) for x in _bios(e, p)]
    rows += [x for f in taught for x in qa_examples("facts", f)]
    return whole_training_set("facts", rows, n)


def score(prediction, example):
    return {"correct": exact_span(prediction, example.gold)}
