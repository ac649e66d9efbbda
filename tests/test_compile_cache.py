"""When the compile cache (cold_ms/runtime.py) is on: for the process's first key only, and only
in a process with an entry script (under `python -c` a cached compile raised FileNotFoundError).
That a cached graph is never stale or of another shape: tests/test_infer_cli.py."""
import os
import subprocess
import sys

import mindspore as ms
import pytest

import fixtures
import numpy_llama as ref
from cold_ms import runtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """This process as one that has cached no key yet (its state restored after the test)."""
    monkeypatch.setattr(runtime, "_state", {k: v for k, v in runtime._state.items() if k != "cache_key"})
    monkeypatch.setenv("COLD_MS_CACHE", str(tmp_path))
    yield
    runtime.stop_compile_cache()


def test_on_for_the_first_key_only(fresh, monkeypatch):
    monkeypatch.setattr(sys, "argv", [os.path.abspath(__file__)])
    assert runtime.use_compile_cache(("a",)) and ms.get_context("enable_compile_cache")
    assert runtime.use_compile_cache(("a",))
    assert not runtime.use_compile_cache(("b",)) and not ms.get_context("enable_compile_cache")


@pytest.mark.parametrize("argv,env", [(["-c"], "1"), ([os.path.abspath(__file__)], "0")])
def test_off_without_an_entry_script_or_when_switched_off(fresh, monkeypatch, argv, env):
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setenv("COLD_MS_COMPILE_CACHE", env)
    assert not runtime.use_compile_cache(("a",))


def test_python_c_warms_up_and_generates(tiny, tmp_path):
    code = ("import sys\nfrom cold_ms.formats.model import load_model\nfrom cold_ms.pipeline.batching import Request\n"
            "from cold_ms.pipeline.engine import Engine\n"
            "engine = Engine(load_model(sys.argv[1]), slots=1, max_len=32, contrastive=False)\nengine.warmup()\n"
            "print(engine.generate([Request([1, 5, 7], amateur=None, max_new_tokens=3)])[0].token_ids)\n")
    env = dict(os.environ, COLD_MS_CACHE=fixtures.cache_with_kernels(str(tmp_path)))
    env.pop("COLD_MS_COMPILE_CACHE", None)
    done = subprocess.run([sys.executable, "-c", code, tiny["model_dir"]], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    want = ref.generate(tiny["cfg"], ref.effective_weights(tiny["weights"]), None, [1, 5, 7], 3)
    assert done.stdout.strip().splitlines()[-1] == str(want)


def test_compiling_freezes_what_lives_and_hands_it_back(monkeypatch):
    """runtime.compiling(): MindSpore's full collection before each compile skips the objects alive
    when compiling began; after, they are the collector's again, unless the process froze them for
    good before (the server after its warm-up): then they stay frozen."""
    import gc
    monkeypatch.setattr(runtime, "_state", {})  # outside any compile (conftest runs each test inside one)
    gc.unfreeze()
    with runtime.compiling():
        assert gc.get_freeze_count() > 0
        with runtime.compiling():
            pass
        assert gc.get_freeze_count() > 0  # the inner exit leaves it to the outer
    assert gc.get_freeze_count() == 0
    gc.freeze()
    frozen = gc.get_freeze_count()
    with runtime.compiling():
        pass
    assert gc.get_freeze_count() == frozen
    gc.unfreeze()
