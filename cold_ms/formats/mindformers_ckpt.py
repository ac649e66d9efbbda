"""MindFormers LLaMA models: a YAML `model.model_config` plus a MindSpore checkpoint.

MindFormers names its LLaMA parameters after Meta's layout (`attention.wq`,
`feed_forward.w1`, `norm_out`, ...) and stores them unpermuted, so loading is a renaming
table. The checkpoint may be a MindSpore `.ckpt` or a `.safetensors` file; optimizer
state and other non-model entries are ignored.
"""
import glob
import os

import numpy as np

from cold_ms.config import ModelConfig
from cold_ms.errors import CheckpointError
from cold_ms.fields import Fields
from cold_ms.formats.safetensors_io import load_safetensors

RENAMES = (("model.tok_embeddings.embedding_weight", "model.embed_tokens.weight"),
           (".attention.wq.", ".self_attn.q_proj."), (".attention.wk.", ".self_attn.k_proj."),
           (".attention.wv.", ".self_attn.v_proj."), (".attention.wo.", ".self_attn.o_proj."),
           (".feed_forward.w1.", ".mlp.gate_proj."), (".feed_forward.w2.", ".mlp.down_proj."),
           (".feed_forward.w3.", ".mlp.up_proj."), (".attention_norm.", ".input_layernorm."),
           (".ffn_norm.", ".post_attention_layernorm."), ("model.norm_out.", "model.norm."))


def to_hf_name(name):
    for old, new in RENAMES:
        name = name.replace(old, new)
    return name


def to_mindformers_name(name):
    for old, new in RENAMES:
        name = name.replace(new, old)
    return name


def read_yaml(path):
    import yaml
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except FileNotFoundError:
        raise CheckpointError(f"file not found: {path}") from None
    except yaml.YAMLError as e:
        raise CheckpointError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(doc, dict):
        raise CheckpointError(f"{path}: expected a MindFormers YAML mapping")
    return doc


def model_config_section(doc, path):
    """The YAML's model.model_config as Fields (CheckpointError if it has none)."""
    model = doc.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("model_config"), dict):
        raise CheckpointError(f"{path}: no model.model_config section (is this a MindFormers YAML?)")
    return Fields(model["model_config"], f"{path}: model.model_config", "a mapping")


def _ffn_size(mc, dim):
    """MindFormers' FeedForward sizing from 4 * hidden when intermediate_size is not given."""
    ffn, multiple = 4 * dim, mc.int("multiple_of", 256)
    multiplier = mc.number("ffn_dim_multiplier", None)
    if multiplier is not None:
        ffn = int((multiplier + 0.01) * ffn)
    return multiple * ((int(2 * ffn / 3) + multiple - 1) // multiple)


def mindformers_config(mc, name="mindformers"):
    """ModelConfig from MindFormers' LlamaConfig fields: model_config Fields, a dict or a LlamaConfig;
    every field it uses is checked here."""
    if not isinstance(mc, Fields):
        mc = Fields(mc.to_dict() if hasattr(mc, "to_dict") else mc, "MindFormers model_config", "a mapping")
    if mc.flag("qkv_concat") or mc.flag("ffn_concat") or mc.flag("qkv_has_bias"):
        mc.refuse("qkv_concat/ffn_concat/qkv-bias checkpoints are not supported; convert them with qkv_concat: False")
    dim, heads = mc.int("hidden_size", 4096), mc.int("num_heads", 32)
    eos = mc.token_ids("eos_token_id") if "eos_token_id" in mc.doc else (2,)
    return mc.build(
        ModelConfig, vocab_size=mc.int("vocab_size", 32000), hidden_size=dim,
        intermediate_size=mc.int("intermediate_size", None) or _ffn_size(mc, dim),
        num_layers=mc.int("num_layers", 32), num_heads=heads, num_kv_heads=mc.int("n_kv_heads", heads),
        rms_norm_eps=mc.number("rms_norm_eps", 1e-5), rope_theta=mc.number("theta", 10000.0),
        max_position_embeddings=mc.int("max_position_embedding", None) or mc.int("seq_length", 2048),
        tie_word_embeddings=mc.flag("tie_word_embeddings"),
        bos_token_id=mc.int("bos_token_id", 1, minimum=0), eos_token_ids=eos, name=name)


def read_checkpoint(path):
    """{name: float32 ndarray} from a MindSpore .ckpt or a .safetensors file."""
    if path.endswith(".safetensors"):
        return load_safetensors(path)
    import mindspore as ms
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        params = ms.load_checkpoint(path)
    except (ValueError, RuntimeError, OSError, TypeError) as e:
        raise CheckpointError(f"{path}: not a readable MindSpore checkpoint, truncated or corrupt "
                              f"({str(e).splitlines()[0]})") from None
    return {n: p.astype(ms.float32).asnumpy() if p.dtype != ms.float32 else p.asnumpy()
            for n, p in params.items()}


def _find_checkpoint(doc, yaml_path):
    root = os.path.dirname(os.path.abspath(yaml_path))
    named = Fields(doc, yaml_path).text("load_checkpoint", None)
    if named:
        named = named if os.path.isabs(named) else os.path.join(root, named)
        if os.path.isdir(named):
            root = named
        else:
            return named
    found = sorted(glob.glob(os.path.join(root, "*.ckpt")) + glob.glob(os.path.join(root, "*.safetensors")))
    if not found:
        raise CheckpointError(f"{yaml_path}: no load_checkpoint given and no .ckpt/.safetensors beside it")
    return found[0]


def pet_adapter(doc, raw, cfg, yaml_path):
    """The LoRA adapter a MindFormers checkpoint carries (pet_config + mindpet_delta_lora_*), or None."""
    from cold_ms.formats.adapters import Adapter, adapter_from_halves
    pet = model_config_section(doc, yaml_path).section("pet_config")
    halves = {}
    for name, array in raw.items():
        if "mindpet_delta_lora_" in name:
            module = to_hf_name(name.split(".mindpet_delta_lora_")[0] + ".weight")
            halves[module[:-len(".weight")] + ".lora_" + name[-1].upper() + ".weight"] = array
    if not halves:
        return None
    if pet.text("pet_type", "lora").lower() != "lora" or "lora_rank" not in pet.doc:
        pet.refuse("the checkpoint has LoRA weights but pet_config has no pet_type: lora with lora_rank")
    rank = pet.int("lora_rank")
    name = "pet"
    tensors = adapter_from_halves(halves, name, rank, cfg)
    return Adapter(name, rank, pet.number("lora_alpha", float(rank)) / rank, tensors)


def load_mindformers(yaml_path):
    """(ModelConfig, weights in HF names, LoRA adapter or None) of a MindFormers LLaMA model."""
    from cold_ms.formats.names import check_weights
    doc = read_yaml(yaml_path)
    cfg = mindformers_config(model_config_section(doc, yaml_path),
                             name=os.path.basename(os.path.dirname(os.path.abspath(yaml_path))))
    ckpt_path = _find_checkpoint(doc, yaml_path)
    raw = read_checkpoint(ckpt_path)
    weights = {to_hf_name(n): np.ascontiguousarray(a) for n, a in raw.items()
               if n.startswith(("model.", "lm_head.")) and "mindpet_delta" not in n}
    if cfg.tie_word_embeddings:
        weights.pop("lm_head.weight", None)
    check_weights(cfg, weights, ckpt_path)
    return cfg, weights, pet_adapter(doc, raw, cfg, yaml_path)
