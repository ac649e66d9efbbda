"""A batch job spread over msrun's workers: each rank runs its share of the input lines into a
part file of its own, OUT.part-R-of-N; once every rank is done, rank 0 merges the parts into
OUT (or `scripts/merge_parts.py OUT` does, if rank 0 died first). A rerun of the same command
skips every id with a result in OUT or in any part, so a killed worker loses nothing and
repeats nothing; its cut last line is dropped and redone.
"""
import glob
import json
import os

from cold_ms.pipeline.jsonl import read_done


def part_path(out, world):
    """Where this rank writes: OUT itself for a single process, else its own part file."""
    return out if world.size == 1 else f"{out}.part-{world.rank}-of-{world.size}"


def parts(out):
    return sorted(glob.glob(glob.escape(out) + ".part-*-of-*"))


def read_rows(out):
    """{id: row} of OUT and its part files, a part's row overriding OUT's (it is newer)."""
    rows = read_done(out)
    for path in parts(out):
        rows.update(read_done(path))
    return rows


def finished_ids(out):
    """Ids with a result (not an error row) in OUT or in any of its part files."""
    done = set()
    for path in [out] + parts(out):
        done |= {i for i, row in read_done(path).items() if "error" not in row}
    return done


def merge(out, order=()):
    """OUT = its rows, overridden by the parts' rows (newer), in the order of the ids in
    `order` (then any others); written in one step, then the parts are removed. Returns the
    number of rows."""
    found = parts(out)
    rows = read_rows(out)
    rank = {i: n for n, i in enumerate(order)}
    ids = sorted(rows, key=lambda i: (rank.get(i, len(rank)), str(i)))
    tmp = out + ".merging"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(rows[i]) + "\n" for i in ids)
    os.replace(tmp, out)
    for path in found:
        os.remove(path)
    return len(ids)
