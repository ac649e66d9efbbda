"""HF checkpoints (config.json + safetensors, single or sharded) of every family in
cold_ms.architectures (LLaMA/Mistral, Qwen2/2.5, Qwen3, Gemma 3 text) -> ModelConfig + weights.

Weights come back as {our parameter name: weight}, matrices in their stored type (float32
arrays; bf16/f16 as cold_ms.wtypes.Packed), vectors (norms, biases) float32, norms as their
effective scale (names.effective_norms); our names are the HF names, so loading is a shape
check, not a renaming maze. Pickled `.bin` files are never loaded.
"""
import dataclasses
import json
import os

from cold_ms.config import ModelConfig
from cold_ms.errors import CheckpointError
from cold_ms.fields import Fields
from cold_ms.formats.names import check_weights, effective_norms
from cold_ms.formats.safetensors_io import load_safetensors


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None


def _weight_files(model_dir):
    single = os.path.join(model_dir, "model.safetensors")
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.isfile(index):
        weight_map = Fields(_read_json(index), index).section("weight_map")
        if not weight_map.doc:
            weight_map.refuse("no weights listed")
        return sorted({os.path.join(model_dir, weight_map.text(name)) for name in weight_map.doc})
    if os.path.isfile(single):
        return [single]
    hint = " (pickled .bin checkpoints are not loaded: convert them to safetensors)" \
        if any(f.endswith(".bin") for f in os.listdir(model_dir)) else ""
    raise CheckpointError(f"{model_dir}: no model.safetensors or model.safetensors.index.json{hint}")


def _generation_eos(model_dir):
    """generation_config.json's eos_token_id (one id or a list: Qwen and Gemma stop on several), or ()."""
    path = os.path.join(model_dir, "generation_config.json")
    return Fields(_read_json(path), path).token_ids("eos_token_id") if os.path.isfile(path) else ()


def read_config(model_dir):
    """The ModelConfig of a model directory's config.json, its EOS set joined with
    generation_config.json's (HF generation stops on either)."""
    path = os.path.join(model_dir, "config.json")
    cfg = ModelConfig.from_hf(_read_json(path), name=os.path.basename(os.path.normpath(model_dir)), where=path)
    eos = tuple(dict.fromkeys(cfg.eos_token_ids + _generation_eos(model_dir)))
    return dataclasses.replace(cfg, eos_token_ids=eos)


def load_converted(model_dir):
    """(ModelConfig, weights) of a directory written by scripts/convert.py (config.json + model.ckpt);
    its norms were written as loaded (effective scales): no offset is added."""
    from cold_ms.formats.mindformers_ckpt import read_checkpoint
    cfg = read_config(model_dir)
    weights = read_checkpoint(os.path.join(model_dir, "model.ckpt"))
    check_weights(cfg, weights, model_dir)
    return cfg, weights


def load_hf_checkpoint(model_dir):
    """(ModelConfig, {name: weight as stored, norms as effective scales}) from a HF model directory."""
    if not os.path.isdir(model_dir):
        raise CheckpointError(f"model directory not found: {model_dir}")
    cfg = read_config(model_dir)
    weights = {}
    for path in _weight_files(model_dir):
        for name, array in load_safetensors(path, keep_stored=True).items():
            if "rotary_emb.inv_freq" in name:
                continue  # a cache some exporters save; recomputed from rope_theta
            key = name if name.startswith(("model.", "lm_head.")) else "model." + name
            weights[key] = array
    if cfg.tie_word_embeddings:
        weights.pop("lm_head.weight", None)
    check_weights(cfg, weights, model_dir)
    return cfg, effective_norms(cfg, weights)
