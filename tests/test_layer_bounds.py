"""The layer kernel reads nothing past the end of its KV caches (it once read up to 15 key
rows past the last visible one: a 4-slot server died of SIGSEGV at start-up)."""
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.parametrize("head_dim,position", [(64, 19), (128, 40), (40, 5)])
def test_attention_stops_at_the_last_key_of_the_cache(head_dim, position):
    # head sizes 64 and 128 take the unrolled score path, 40 the general one; the last key
    # block is partial, and the cache's last byte is followed by an unreadable page
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run([sys.executable, os.path.join(HERE, "guarded_layer.py"), str(head_dim), str(position)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr[-2000:]}"
    assert run.stdout.split()[-1] == "identical"
