"""The base model's tensor names and shapes (HF names, with each family's extra tensors from
cold_ms.architectures), and the check that a loaded checkpoint holds exactly them: shared by
every loader and the adapter stacks."""
import numpy as np

from cold_ms.errors import CheckpointError

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
    arch = cfg.arch
    for i in range(cfg.num_layers):
        for norm in filter(None, arch.norms):
            shapes[f"model.layers.{i}.{norm}.weight"] = (d,)
        for m in ATTN + MLP:
            n_in, n_out = module_dims(cfg, m)
            shapes[module_path(i, m) + ".weight"] = (n_out, n_in)
            if arch.qkv_bias and m in ("q_proj", "k_proj", "v_proj"):
                shapes[module_path(i, m) + ".bias"] = (n_out,)
        if arch.qk_norm:
            for norm in ("q_norm", "k_norm"):
                shapes[f"model.layers.{i}.self_attn.{norm}.weight"] = (cfg.head_dim,)
    return shapes


def is_norm(name):
    """Whether `name` is an RMSNorm weight (the ones a family may store with an offset)."""
    return name.endswith(("norm.weight", "layernorm.weight"))


def effective_norms(cfg, weights):
    """`weights` (a HF checkpoint's, HF names) with every RMSNorm weight made its effective scale.

    The convention of every loaded weights dict: an RMSNorm multiplies by its weight, nothing
    added. HF stores a family with a norm offset (Gemma: w, applied as 1 + w) without it, so
    the HF/safetensors loader adds cfg.arch.norm_offset here, q/k norms included. A GGUF written
    by llama.cpp's converter already stores 1 + w, and our own converted checkpoints (scripts/
    convert.py) store the loaded weights, so those loaders add nothing.
    """
    offset = cfg.arch.norm_offset
    if not offset:
        return weights
    return {name: (w + np.float32(offset)).astype(np.float32) if is_norm(name) else w
            for name, w in weights.items()}


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
