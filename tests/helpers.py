"""Shared test helpers that drive cold_ms (the references live in numpy_llama.py)."""
import importlib.util
import os
import sys

import numpy as np
from mindspore import Tensor

from cold_ms.formats.adapters import AdapterRegistry, load_peft_adapter
from cold_ms.pipeline.engine import Engine
from cold_ms.formats.model import load_model


def engine_for(tiny, names=(), **kw):
    model = load_model(kw.pop("model_dir", None) or tiny["model_dir"])
    reg = AdapterRegistry([load_peft_adapter(tiny["adapter_dir"][n], n, model.config) for n in names])
    kw.setdefault("max_len", 64)
    return Engine(model, reg, **kw)


def all_logits(engine, tokens, lora_idx, positions=None):
    """Logits (T, V) at every position of `tokens` (or at `positions`) for one row with adapter
    slot `lora_idx`: one forward over all of `tokens` per position."""
    n = len(tokens)
    args = (Tensor(np.array([tokens], np.int32)), Tensor(np.arange(n, dtype=np.int32)[None]),
            Tensor(np.array([0], np.int32)))
    idx = Tensor(np.array([lora_idx], np.int32))
    return np.stack([engine.lm(*args, Tensor(np.array([t], np.int32)), idx).asnumpy()[0]
                     for t in (range(n) if positions is None else positions)])


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def script(name):
    """scripts/NAME.py as a module, so its main(argv) runs in-process (no interpreter start, no
    second import of MindSpore: a fresh process per CLI case cost ~5 s)."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", os.path.join(ROOT, "scripts", name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_main(name, argv):
    """(exit code, stdout, stderr) of scripts/NAME.py main(argv), in-process, its output held
    apart from the test's own (for fixtures and helpers without capsys)."""
    import contextlib
    import io
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = script(name).main(list(argv))
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
            else:  # as the interpreter ends on sys.exit(message): the message on stderr, exit code 1
                print(e.code, file=sys.stderr)
                code = 1
    return code, stdout.getvalue(), stderr.getvalue()


def run_script(name, argv, capsys):
    """(exit code, stdout, stderr) of scripts/NAME.py main(argv), in-process."""
    capsys.readouterr()
    try:
        code = script(name).main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err
