#!/usr/bin/env python
"""Convert any model cold_ms loads (HF directory, GGUF, MindFormers YAML) into a MindSpore
checkpoint directory that loads faster next time: config.json + model.ckpt (float32,
HF parameter names) + the tokenizer (tokenizer.json or tokenizer.model, tokenizer_config.json).

  python scripts/convert.py [--model SRC] --out DIR
"""
import argparse
import os
import sys

os.environ.setdefault("GLOG_v", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from cold_ms.errors import ColdError  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="source model (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--out", required=True, help="output directory (created; must not hold a model)")
    args = p.parse_args(argv)
    from cold_ms.formats.convert import convert
    try:
        out = convert(args.model, args.out)
    except ColdError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
