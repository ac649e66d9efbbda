"""Run by msrun in every rank (tests/test_msrun.py): several scripts' main(argv), one after
another in one process, so one cluster start-up (~15 s idle) serves them all. Each script ends
with distributed.finish(), which leaves the cluster: here it only waits for every rank, and the
cluster is left once, after the last script. Usage: msrun ... msrun_jobs.py JOBS.json, a list of
[script name, argv]."""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from cold_ms import distributed  # noqa: E402
from helpers import script  # noqa: E402


def main(path):
    leave = distributed.finish
    distributed.finish = distributed.barrier  # every script ends in step; the cluster stays up
    with open(path) as f:
        jobs = json.load(f)
    for name, argv in jobs:
        print(f"msrun_jobs: {name}", file=sys.stderr, flush=True)  # where this job's log lines begin
        code = script(name).main(argv)
        if code:
            return code
    leave()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
