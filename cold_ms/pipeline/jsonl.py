"""Append-only JSON-lines result files that survive interruptions.

A run appends one line per finished item and flushes it; a rerun reads the ids already
there and skips them. A last line cut short by a crash is dropped (its item is redone),
so nothing is lost and nothing is written twice.
"""
import json
import os

from cold_ms.errors import InputError


def drop_partial_line(path):
    """Cut a last line that an interruption left without its newline."""
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return
    with open(path, "rb+") as f:
        data = f.read()
        if not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def _row(line, path, n):
    """The result row of one complete line, or None for a line an interruption cut."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(row, dict) or not isinstance(row.get("id"), (str, int)):
        raise InputError(f"{path} line {n}: not a result row (an object with an 'id'): is this the right "
                         f"output file?")
    return row


def read_done(path):
    """{id: row} of the complete lines of a result file (empty if it does not exist)."""
    if not os.path.isfile(path):
        return {}
    rows = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            row = _row(line, path, n)
            if row is not None:
                rows[row["id"]] = row
    return rows


def keep_rows(path, keep):
    """Rewrite the result file without the rows for which keep(row) is false. The new file
    replaces the old in one step, so an interruption leaves one or the other."""
    if not os.path.isfile(path):
        return
    drop_partial_line(path)
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    kept = [line for n, line in enumerate(lines, 1) if (row := _row(line, path, n)) is None or keep(row)]
    if len(kept) == len(lines):
        return
    tmp = path + ".rewrite"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(kept)
    os.replace(tmp, path)


def open_for_append(path):
    """The result file, ready to append after dropping a cut last line."""
    drop_partial_line(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return open(path, "a", encoding="utf-8")
