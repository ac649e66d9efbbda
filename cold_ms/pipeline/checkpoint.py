"""HF LLaMA checkpoints (config.json + safetensors, single or sharded) -> ModelConfig + fp32 weights.

Weights come back as {our parameter name: float32 ndarray}; our names are the HF names,
so loading is a shape check, not a renaming maze. Pickled `.bin` files are never loaded.
"""
import json
import os

from cold_ms.config import ModelConfig
from cold_ms.errors import CheckpointError
from cold_ms.pipeline.safetensors_io import load_safetensors

ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


def module_dims(cfg, module):
    """(in, out) of a projection, as in x @ W^T with W (out, in)."""
    d, f = cfg.hidden_size, cfg.intermediate_size
    q, kv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    return {"q_proj": (d, q), "k_proj": (d, kv), "v_proj": (d, kv), "o_proj": (q, d),
            "gate_proj": (d, f), "up_proj": (d, f), "down_proj": (f, d)}[module]


def module_path(layer, module):
    parent = "self_attn" if module in ATTN else "mlp"
    return f"model.layers.{layer}.{parent}.{module}"


def expected_shapes(cfg):
    """{HF parameter name: shape} of the base model."""
    d = cfg.hidden_size
    shapes = {"model.embed_tokens.weight": (cfg.vocab_size, d), "model.norm.weight": (d,)}
    if not cfg.tie_word_embeddings:
        shapes["lm_head.weight"] = (cfg.vocab_size, d)
    for i in range(cfg.num_layers):
        shapes[f"model.layers.{i}.input_layernorm.weight"] = (d,)
        shapes[f"model.layers.{i}.post_attention_layernorm.weight"] = (d,)
        for m in ATTN + MLP:
            n_in, n_out = module_dims(cfg, m)
            shapes[module_path(i, m) + ".weight"] = (n_out, n_in)
    return shapes


def check_weights(cfg, weights, source):
    """Raise CheckpointError unless `weights` holds exactly the base model's tensors."""
    shapes = expected_shapes(cfg)
    missing = sorted(set(shapes) - set(weights))
    if missing:
        more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
        raise CheckpointError(f"{source}: missing tensors {missing[:3]}{more}")
    unexpected = sorted(set(weights) - set(shapes))
    if unexpected:
        raise CheckpointError(f"{source}: unexpected tensors {unexpected[:3]} "
                              f"(checkpoint and config do not match)")
    for name, shape in shapes.items():
        if tuple(weights[name].shape) != shape:
            raise CheckpointError(f"{source}: tensor {name} has shape {tuple(weights[name].shape)}, "
                                  f"the config implies {shape} (checkpoint and config do not match)")


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
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index}: no 'weight_map'")
        return sorted({os.path.join(model_dir, f) for f in weight_map.values()})
    if os.path.isfile(single):
        return [single]
    hint = " (pickled .bin checkpoints are not loaded: convert them to safetensors)" \
        if any(f.endswith(".bin") for f in os.listdir(model_dir)) else ""
    raise CheckpointError(f"{model_dir}: no model.safetensors or model.safetensors.index.json{hint}")


def load_converted(model_dir):
    """(ModelConfig, weights) of a directory written by scripts/convert.py (config.json + model.ckpt)."""
    from cold_ms.pipeline.mindformers_ckpt import read_checkpoint
    cfg = ModelConfig.from_hf(_read_json(os.path.join(model_dir, "config.json")),
                              name=os.path.basename(os.path.normpath(model_dir)))
    weights = read_checkpoint(os.path.join(model_dir, "model.ckpt"))
    check_weights(cfg, weights, model_dir)
    return cfg, weights


def load_hf_checkpoint(model_dir):
    """(ModelConfig, {name: float32 ndarray}) from a HF LLaMA model directory."""
    if not os.path.isdir(model_dir):
        raise CheckpointError(f"model directory not found: {model_dir}")
    cfg = ModelConfig.from_hf(_read_json(os.path.join(model_dir, "config.json")),
                              name=os.path.basename(os.path.normpath(model_dir)))
    weights = {}
    for path in _weight_files(model_dir):
        for name, array in load_safetensors(path).items():
            if "rotary_emb.inv_freq" in name:
                continue  # a cache some exporters save; recomputed from rope_theta
            key = name if name.startswith(("model.", "lm_head.")) else "model." + name
            weights[key] = array
    if cfg.tie_word_embeddings:
        weights.pop("lm_head.weight", None)
    check_weights(cfg, weights, model_dir)
    return cfg, weights
