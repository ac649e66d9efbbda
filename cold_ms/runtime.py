"""Process-wide MindSpore settings: execution mode, device and the compile cache.

MindSpore's compile cache names graphs by compile order alone (compile_cache_<n>.mindir)
and loads file n for the n-th cached compile of a process, checking only source files:
not input shapes (measured: a process whose first graph was a 64-token prefill was handed
another process's 16-token graph and failed in Reshape) and not constants baked into a
graph (a model with another rope_theta silently reused a stale graph). So the cache is on
only while a caller compiles a sequence of graphs fixed by its key (an engine's warm-up
list, a training run's two graphs), the directory is keyed by everything that shapes
those graphs, and a process that meets a second key keeps it off rather than mix graphs.
The key also covers cold_ms's own source, Python and kernels, so a changed Cell or kernel
never meets an old graph (seen here: a training graph changed under an unchanged key gave
NaN losses until the cache was cleared). MindSpore also parses the process's entry script
(sys.argv[0]) for the files a graph depends on: under `python -c` (pytest-xdist's workers too)
that is no file and a cached compile raised FileNotFoundError, so there the cache stays off.
"""
import contextlib
import gc
import hashlib
import os
import sys

import mindspore as ms

from cold_ms.errors import ConfigError

MODES = {"graph": ms.GRAPH_MODE, "pynative": ms.PYNATIVE_MODE}
DEVICES = ("CPU", "Ascend")
_state = {}


def cache_dir(*parts):
    """$COLD_MS_CACHE, else $XDG_CACHE_HOME/cold_ms, else ~/.cache/cold_ms (created)."""
    root = os.environ.get("COLD_MS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cold_ms")
    path = os.path.join(root, *parts)
    os.makedirs(path, exist_ok=True)
    return path


def device():
    """Target device: $COLD_MS_DEVICE (CPU or Ascend), CPU by default."""
    name = os.environ.get("COLD_MS_DEVICE", "CPU")
    if name not in DEVICES:
        raise ConfigError(f"COLD_MS_DEVICE must be one of {', '.join(DEVICES)}, got {name!r}")
    return name


def configure(mode="graph"):
    """Select the execution mode (graph|pynative) and, once per process, the device."""
    if mode not in MODES:
        raise ConfigError(f"mode must be 'graph' or 'pynative', got {mode!r}")
    if "device" not in _state:
        ms.set_device(device())
        _state["device"] = device()
    if ms.get_context("mode") != MODES[mode]:
        ms.set_context(mode=MODES[mode])


def _source_digest():
    """Hash of every cold_ms Python file and custom CPU kernel source (once per process): a
    cached graph names the kernel library it calls, so a changed kernel must miss too."""
    if "source" not in _state:
        package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        kernels = os.path.join(os.path.dirname(package), "custom_ops", "cpu")
        digest = hashlib.sha256()
        for root, suffixes in ((package, (".py",)), (kernels, (".cc", ".h"))):
            for folder, _, files in sorted(os.walk(root)):
                for name in sorted(f for f in files if f.endswith(suffixes)):
                    with open(os.path.join(folder, name), "rb") as f:
                        digest.update(name.encode() + f.read())
        _state["source"] = digest.hexdigest()
    return _state["source"]


def use_compile_cache(graph_key):
    """Cache the graphs compiled from now until stop_compile_cache(); `graph_key` (any
    repr-able value) must fix which graphs those are and in what order.

    Off when $COLD_MS_COMPILE_CACHE=0, without an entry script, and for every key but the
    process's first (MindSpore keeps one cache directory per process). Returns whether the
    cache is on.
    """
    entry = sys.argv[0] if sys.argv else ""
    if os.environ.get("COLD_MS_COMPILE_CACHE", "1") == "0" or entry and not os.path.isfile(entry):
        return False
    digest = hashlib.sha256(repr((graph_key, ms.__version__, _source_digest())).encode()).hexdigest()[:16]
    if _state.setdefault("cache_key", digest) != digest:
        stop_compile_cache()
        return False
    ms.set_context(enable_compile_cache=True, compile_cache_path=cache_dir("compile", digest))
    return True


def stop_compile_cache():
    """Compile what follows without the cache (MindSpore honours this between compiles)."""
    ms.set_context(enable_compile_cache=False)


@contextlib.contextmanager
def compiling():
    """Around calls that compile a graph. MindSpore runs a full gc.collect() before every compile
    (mindspore/graph/api.py), which walks every live Python object: 0.1 s a graph in infer.py,
    0.3 s in a test process holding more. The objects alive when compiling starts are frozen
    (left out of those collections) and handed back to the collector after. A process that froze
    its objects for good already (the server, after its warm-up) is left as it is, and nested
    uses leave the freezing to the outermost."""
    outermost = "frozen" not in _state
    if outermost:
        _state["frozen"] = gc.get_freeze_count() == 0
        if _state["frozen"]:
            gc.freeze()
    try:
        yield
    finally:
        if outermost and _state.pop("frozen"):
            gc.unfreeze()
