"""cold_ms: Contrastive LoRA Decoding on MindSpore."""
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"


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
