"""Process-wide MindSpore settings: execution mode, device and the compile cache.

MindSpore's compile cache numbers graphs by compile order and checks only source files
and input shapes, not constants baked into a graph (rms eps, rope tables, mask mode):
measured here, a model with another rope_theta silently reused a stale graph. So the
cache directory is keyed by everything that shapes the graphs, and a process that builds
a second, differently-keyed engine turns the cache off rather than mix graphs. The key
also covers cold_ms's own source, so a changed Cell never meets an old graph (seen
here: a training graph changed under an unchanged key gave NaN losses until the cache
was cleared).
"""
import hashlib
import os

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
    """Hash of every cold_ms Python file (computed once per process)."""
    if "source" not in _state:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        digest = hashlib.sha256()
        for folder, _, files in sorted(os.walk(root)):
            for name in sorted(f for f in files if f.endswith(".py")):
                with open(os.path.join(folder, name), "rb") as f:
                    digest.update(name.encode() + f.read())
        _state["source"] = digest.hexdigest()
    return _state["source"]


def use_compile_cache(graph_key):
    """Enable the compile cache for the graphs described by `graph_key` (any repr-able value).

    Off when $COLD_MS_COMPILE_CACHE=0. Returns whether the cache is in use.
    """
    if os.environ.get("COLD_MS_COMPILE_CACHE", "1") == "0":
        return False
    digest = hashlib.sha256(repr((graph_key, ms.__version__, _source_digest())).encode()).hexdigest()[:16]
    first = _state.setdefault("cache_key", digest)
    if first != digest:
        if _state.get("cache_on"):
            ms.set_context(enable_compile_cache=False)
            _state["cache_on"] = False
        return False
    if "cache_on" not in _state:
        ms.set_context(enable_compile_cache=True, compile_cache_path=cache_dir("compile", digest))
        _state["cache_on"] = True
    return _state["cache_on"]
