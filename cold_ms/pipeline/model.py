"""A loaded base model: its config, fp32 weights and tokenizer, whatever format it came from."""
import os
from dataclasses import dataclass, field
from typing import Optional

from cold_ms.config import ModelConfig
from cold_ms.errors import CheckpointError
from cold_ms.pipeline.checkpoint import load_hf_checkpoint
from cold_ms.pipeline.tokenizer import Tokenizer, load_tokenizer


@dataclass
class LoadedModel:
    config: ModelConfig
    weights: dict = field(repr=False)
    tokenizer: Optional[Tokenizer]
    source: str
    load_s: float = 0.0


def check_tokenizer(cfg, tokenizer, source):
    if tokenizer is not None and tokenizer.vocab_size > cfg.vocab_size:
        raise CheckpointError(f"{source}: the tokenizer has {tokenizer.vocab_size} tokens but the "
                              f"model only {cfg.vocab_size}: tokenizer and model do not match")


def load_model(path):
    """Load a HF LLaMA model directory (config.json + safetensors [+ tokenizer.model])."""
    import time
    start = time.perf_counter()
    if not os.path.exists(path):
        raise CheckpointError(f"model not found: {path}")
    if not os.path.isdir(path) or not os.path.isfile(os.path.join(path, "config.json")):
        raise CheckpointError(f"{path}: not a supported model (expected a HF model directory "
                              f"with config.json and safetensors weights)")
    cfg, weights = load_hf_checkpoint(path)
    tokenizer = load_tokenizer(path)
    check_tokenizer(cfg, tokenizer, path)
    return LoadedModel(cfg, weights, tokenizer, path, time.perf_counter() - start)
