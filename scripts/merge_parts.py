#!/usr/bin/env python
"""Merge the part files of a batch job run under msrun (OUT.part-R-of-N) into OUT, as rank 0
does when every rank has finished: for a job whose rank 0 died before merging.

  python scripts/merge_parts.py OUT.jsonl [--input-file IN.jsonl]   # IN gives the row order
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from cold_ms.errors import ColdError  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("output_file")
    p.add_argument("--input-file", help="the job's input: results follow its order")
    args = p.parse_args(argv)
    from cold_ms.pipeline.batch_job import read_jobs
    from cold_ms.pipeline.shards import merge, parts
    try:
        found = parts(args.output_file)
        order = [j["id"] for j in read_jobs(args.input_file)] if args.input_file else ()
        n = merge(args.output_file, order)
    except (ColdError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"merged {len(found)} part files into {args.output_file}: {n} rows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
