"""cold_ms: Contrastive LoRA Decoding on MindSpore."""
import contextlib
import importlib.abc
import importlib.util
import logging
import os
import sys

__version__ = "0.1.0"
# The MindSpore releases cold_ms runs on: the one setup.py pins and the tests run on. Images
# that bring their own MindSpore (deploy/modelarts/Dockerfile.ascend) check against this.
MINDSPORE_SUPPORTED = ("2.9.0",)

# The CPU kernels run ~250 short OpenMP regions a decode step, and how long the idle
# worker busy-waits for the next one decides much of the step. With MindSpore's own
# OpenMP threads counted, libgomp caps a plain GOMP_SPINCOUNT at 100 spins; the active
# policy lifts the cap. Measured (SmolLM2-135M, CoLD B=1, idle / beside a busy process):
#   GOMP_SPINCOUNT=300 alone (capped):           19.9 ms / 24.6 ms
#   OMP_WAIT_POLICY=active, GOMP_SPINCOUNT=1000:  17.6 ms / 36 ms
#   OMP_WAIT_POLICY=active, GOMP_SPINCOUNT=100:   20.1 ms / 25.0 ms
# (libgomp's default 300k spins took 1.9 s a step beside a busy process.) Inference
# normally has the cores to itself, hence 1000; set GOMP_SPINCOUNT=100 when it shares
# them. libgomp reads both when it loads (with mindspore), so import cold_ms first.
os.environ.setdefault("OMP_WAIT_POLICY", "active")
os.environ.setdefault("GOMP_SPINCOUNT", "1000")


class _AfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Runs cold_ms's MindFormers registration right after `import mindformers` completes,
    so `import cold_ms` never pays for importing mindformers (seconds) itself."""

    def find_spec(self, name, path=None, target=None):
        if name != "mindformers":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None:
            self._loader, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        # MindFormers binds its log handler to sys.stdout while importing (stderr keeps it off the
        # program's output), and warns there about optional models it cannot import (its PyNative
        # DeepSeek/Qwen3 need 'hyper_parallel'): import-time warnings are not shown
        logging.disable(logging.WARNING)
        try:
            with contextlib.redirect_stdout(sys.stderr):
                self._loader.exec_module(module)
        finally:
            logging.disable(logging.NOTSET)
        from cold_ms.pipeline.mindformers import register
        register()


if "mindformers" in sys.modules:
    from cold_ms.pipeline.mindformers import register as _register
    _register()
elif importlib.util.find_spec("mindformers") is not None:
    sys.meta_path.insert(0, _AfterImport())
