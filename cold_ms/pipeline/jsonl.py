"""Append-only JSON-lines result files that survive interruptions.

A run appends one line per finished item and flushes it; a rerun reads the ids already
there and skips them. A last line cut short by a crash is dropped (its item is redone),
so nothing is lost and nothing is written twice.
"""
import json
import os


def drop_partial_line(path):
    """Cut a last line that an interruption left without its newline."""
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return
    with open(path, "rb+") as f:
        data = f.read()
        if not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def read_done(path):
    """{id: row} of the complete lines of a result file (empty if it does not exist)."""
    if not os.path.isfile(path):
        return {}
    rows = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by an interruption is simply redone
            rows[row["id"]] = row
    return rows


def open_for_append(path):
    """The result file, ready to append after dropping a cut last line."""
    drop_partial_line(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return open(path, "a", encoding="utf-8")
