#!/usr/bin/env python
"""Which candidate facts the base model knows: writes cold_ms/data/known_facts.json, the
facts of the counterfacts task.

  python scripts/known_facts.py              # embedded SmolLM2-135M-Instruct, ~8 min on 2 busy cores

A candidate of cold_ms/data/fact_candidates.json is known when the base model's greedy
answer (chat template, engine defaults, --max-new-tokens) names its true value, as whole
words after normalisation, under at least one held-out question of its relation (the
questions validation and test ask); the file lists which, and the task asks the fact only
with those, so the base model's own base-value rate on validation and test is 100%.
Candidates whose value and subject contain one another are left out (not scorable).
"""
import argparse
import json
import os
import sys

os.environ.setdefault("GLOG_v", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from cold_ms.errors import ColdError  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="base model (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--out", help="default: cold_ms/data/known_facts.json")
    return p.parse_args(argv)


def measure(model, candidates, max_new_tokens, batch):
    """{(relation, subject, value): [named under held-out question k, ...]} of the scorable candidates."""
    from cold_ms.formats.chat import chat_prompt_ids
    from cold_ms.pipeline.batching import Request
    from cold_ms.pipeline.engine import Engine
    from cold_ms.tasks.answers import mentions
    from cold_ms.tasks.counterfacts import RELATIONS
    from cold_ms.tasks.knowledge import Fact
    asked = [(key, Fact(0, (("subject", key[1]),), RELATIONS[key[0]], key[2]).render(t))
             for key in candidates for t in RELATIONS[key[0]].test_questions]
    prompts = [chat_prompt_ids(model.tokenizer, [{"role": "user", "content": q}]) for _, q in asked]
    engine = Engine(model, slots=batch, max_len=-(-(max(map(len, prompts)) + max_new_tokens) // 64) * 64,
                    contrastive=False)
    results = engine.generate([Request(p, amateur=None, max_new_tokens=max_new_tokens) for p in prompts])
    named = {key: [] for key in candidates}
    for (key, _), res in zip(asked, results):
        named[key].append(mentions(model.tokenizer.decode(res.token_ids), key[2]))
    return named


def write(path, record):
    """One JSON key per line, one fact per line: a reviewable diff when it is remeasured."""
    lines = []
    for key, value in record.items():
        if isinstance(value, list):
            body = ",\n".join("  " + json.dumps(v, ensure_ascii=False) for v in value)
            lines.append(f"{json.dumps(key)}: [\n{body}\n ]")
        else:
            lines.append(f"{json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    with open(path, "w", encoding="utf-8") as f:
        f.write("{\n " + ",\n ".join(lines) + "\n}\n")


def main(argv=None):
    args = parse_args(argv)
    from cold_ms.formats.model import load_model
    from cold_ms.tasks.counterfacts import CANDIDATES, KNOWN, RELATIONS, read_json, usable
    try:
        relations = read_json(CANDIDATES)["facts"]
        candidates = [(r, s, v) for r, pairs in relations.items() for s, v in pairs]
        scorable = [c for c in candidates if usable(c[1], c[2])]
        model = load_model(args.model)
        named = measure(model, scorable, args.max_new_tokens, args.batch)
    except ColdError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    known = [list(k) + [[i for i, ok in enumerate(named[k]) if ok]] for k in scorable if any(named[k])]
    counts = {r: {"candidates": sum(c[0] == r for c in candidates), "scorable": sum(c[0] == r for c in scorable),
                  "known": sum(k[0] == r for k in known)} for r in relations}
    write(args.out or KNOWN, {
        "about": "Facts of the counterfacts task: [relation, subject, true value, the held-out questions of the "
                 "relation under which the base model names the value] (greedy; see scripts/known_facts.py).",
        "command": "python scripts/known_facts.py" + (f" --model {args.model}" if args.model else "")
                   + f" --max-new-tokens {args.max_new_tokens}",
        "model": model.config.name, "max_new_tokens": args.max_new_tokens,
        "held_out_questions": {r: list(RELATIONS[r].test_questions) for r in relations},
        "counts": counts, "known": known,
        "unknown": [list(k) for k in scorable if not any(named[k])]})
    print(json.dumps(counts), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
