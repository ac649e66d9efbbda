"""cold_ms: Contrastive LoRA Decoding on MindSpore."""
import importlib.abc
import importlib.util
import os
import sys

__version__ = "0.1.0"

# The CPU kernels run OpenMP regions ~200 times a decode step. libgomp's default busy-wait
# (300k spins) turns into lost scheduler quanta when another process shares the cores:
# measured 1.9 s instead of 19 ms per SmolLM2 step beside a busy process; with 300 spins,
# 30 ms there and 19 ms on an idle machine. libgomp reads this when it loads (with
# mindspore), so it only takes effect when cold_ms is imported first; set it yourself
# otherwise.
os.environ.setdefault("GOMP_SPINCOUNT", "300")


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
        self._loader.exec_module(module)
        from cold_ms.pipeline.mindformers import register
        register()


if "mindformers" in sys.modules:
    from cold_ms.pipeline.mindformers import register as _register
    _register()
elif importlib.util.find_spec("mindformers") is not None:
    sys.meta_path.insert(0, _AfterImport())
