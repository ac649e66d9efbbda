"""GGUF (llama.cpp) checkpoints of every family in cold_ms.architectures -> ModelConfig + weights
as stored + tokenizer.

Matrices stay in their stored type (Q4_0/Q4_1/Q8_0/K-quants/F16/BF16/..., cold_ms.wtypes.Packed;
F32 as float32 arrays): an engine chooses what to read them as (cold_ms/ops/prepare.py).
llama.cpp stores LLaMA's Q and K rows permuted for its interleaved rotary layout (a family's
gguf_permuted_qk); they are permuted back to the HF rotate-half layout here (whole rows: the
stored blocks are unchanged). Norms come as llama.cpp's converter wrote them, already their
effective scale (Gemma's 1 + w): nothing is added (names.effective_norms).
"""
import os
import re

import numpy as np

from cold_ms import wtypes
from cold_ms.architectures import BY_GGUF_ARCH
from cold_ms.config import ModelConfig
from cold_ms.errors import CheckpointError
from cold_ms.fields import REQUIRED, Fields

_NAMES = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
          "output.weight": "lm_head.weight"}
_LAYER = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
          "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
          "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
# llama.cpp's names of a layer's norms in the order of Family.norms' roles (attention in, attention
# out, MLP in, MLP out): its ffn_norm is the MLP's input norm, HF's post_attention_layernorm in
# LLaMA and Qwen but pre_feedforward_layernorm in Gemma's sandwich
_NORM_ROLES = ("attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm")
_ROPE_FREQS = "rope_freqs.weight"  # per-frequency divisors (Llama 3.1's rope): config, not a weight
_TOKEN_IDS = ("bos_token_id", "eos_token_id", "eot_token_id", "eom_token_id")


def open_gguf(path):
    from cold_ms.formats.gguf_file import GGUFFile
    try:
        return GGUFFile(path)
    except FileNotFoundError:
        raise CheckpointError(f"GGUF file not found: {path}") from None
    except (ValueError, IndexError, KeyError, OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not a readable GGUF file, truncated or corrupt ({e})") from None


def _f32_value(x):
    """A float32 metadata value as the decimal it was written from (1e-05, not 9.9999997e-06)."""
    return float(str(np.float32(x)))


def unpermute(w, heads):
    """Undo llama.cpp's Q/K row permutation: its rows are (head, d/2, 2)-ordered, HF's (head, 2, d/2)."""
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _gemma3(meta, key, layers, dim, heads):
    """What llama.cpp assumes of a Gemma 3 GGUF, which does not store it (src/llama-model.cpp):
    every 6th layer global, the others sliding-window with rope base 10000; attention scale
    1/sqrt(head_dim), but 1/sqrt(hidden / heads) for the 27B (62 layers)."""
    window = meta.int(key("attention.sliding_window"))
    return dict(layer_windows=tuple(0 if (i + 1) % 6 == 0 else window for i in range(layers)),
                rope_local_theta=10000.0, query_pre_attn_scalar=dim / heads if layers == 62 else 0.0)


_IMPLIED = {"gemma3": _gemma3}  # per GGUF architecture, the hyper-parameters llama.cpp hard-codes


def _rope_scaling(meta, key):
    kind = meta.text(key("rope.scaling.type"), "none")
    if kind == "none":
        return ()
    if kind != "linear":
        meta.refuse(f"'{key('rope.scaling.type')}' {kind!r} is not supported (supported: none, linear)")
    return (("rope_type", "linear"), ("factor", _f32_value(meta.number(key("rope.scaling.factor")))))


def _rope_freq_factors(reader):
    """llama.cpp's rope_freqs tensor (Llama 3.1+: theta_i divided by factor i), or ()."""
    found = [t for t in reader.tensors if t.name == _ROPE_FREQS]
    return tuple(float(x) for x in np.asarray(found[0].data, np.float32)) if found else ()


def gguf_config(reader, path):
    """The ModelConfig of a GGUF file's metadata, every key it uses checked here."""
    names = {t.name for t in reader.tensors}
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    # scalars only: the tokenizer's arrays are large and read by gguf_vocab
    meta = Fields({k: f.contents() for k, f in reader.fields.items() if not k.startswith("tokenizer.ggml.")
                   or k in tuple(f"tokenizer.ggml.{i}" for i in _TOKEN_IDS)}, path, "metadata")
    arch = meta.text("general.architecture")
    family = BY_GGUF_ARCH.get(arch)
    if family is None:
        meta.refuse(f"GGUF architecture '{arch}' is not supported (supported: {', '.join(BY_GGUF_ARCH)})")
    key = lambda k: f"{arch}.{k}"  # noqa: E731
    heads, dim, layers = meta.int(key("attention.head_count")), meta.int(key("embedding_length")), \
        meta.int(key("block_count"))
    head_dim = meta.int(key("attention.key_length"), dim // heads)
    if meta.int(key("attention.value_length"), head_dim) != head_dim:
        meta.refuse(f"'{key('attention.value_length')}' differs from its key_length: not supported")
    if meta.int(key("rope.dimension_count"), head_dim) != head_dim:
        meta.refuse(f"'{key('rope.dimension_count')}': partial rotary embeddings are not supported")
    ids = [meta.int(f"tokenizer.ggml.{i}", None, minimum=0) for i in _TOKEN_IDS]
    implied = _IMPLIED[arch](meta, key, layers, dim, heads) if arch in _IMPLIED else {}
    return meta.build(
        ModelConfig, vocab_size=meta.int(key("vocab_size"), len(tokens.contents()) if tokens else REQUIRED),
        hidden_size=dim, intermediate_size=meta.int(key("feed_forward_length")),
        num_layers=layers, num_heads=heads, num_kv_heads=meta.int(key("attention.head_count_kv"), heads),
        head_dim=head_dim, rms_norm_eps=_f32_value(meta.number(key("attention.layer_norm_rms_epsilon"), 1e-5)),
        rope_theta=_f32_value(meta.number(key("rope.freq_base"), 10000.0)),
        max_position_embeddings=meta.int(key("context_length"), 2048),
        tie_word_embeddings="output.weight" not in names, bos_token_id=ids[0],
        eos_token_ids=tuple(dict.fromkeys(i for i in ids[1:] if i is not None)),  # EOS, end of turn, end of message
        name=display_name(path, meta.text("general.organization", "")), family=family.name, rope_scaling=_rope_scaling(meta, key),
        rope_freq_factors=_rope_freq_factors(reader), **implied)


def display_name(path, organization=""):
    """A GGUF model's name as the hub knows it: ORGANIZATION/FILE-STEM without its quantisation
    suffix ('HuggingFaceTB/SmolLM2-135M-Instruct' for SmolLM2-135M-Instruct.Q4_1.gguf), a loadable
    id for trained adapters' base_model_name_or_path. general.name is the converter's title-cased
    guess ('Smollm2 135M 8k Lc100K Mix1 Ep2')."""
    stem = re.sub(r"[.-](q\d\w*|iq\d\w*|f16|f32|bf16)$", "", os.path.basename(path)[:-len(".gguf")],
                  flags=re.IGNORECASE) or "gguf"
    return f"{organization}/{stem}" if organization and "/" not in organization else stem


def _our_name(name, family):
    """Our (HF) name of a GGUF tensor of a `family` model."""
    if name in _NAMES:
        return _NAMES[name]
    parts = name.split(".")
    if len(parts) == 4 and parts[0] == "blk":
        part = parts[2]
        module = _LAYER.get(part) or (family.norms[_NORM_ROLES.index(part)] if part in _NORM_ROLES else None)
        if module:
            return f"model.layers.{parts[1]}.{module}.{parts[3]}"
    raise CheckpointError(f"unexpected GGUF tensor {name} for a {family.name} model")


def _foreign(tensor_type):
    """A GGUF block type no kernel reads: kept as stored, dequantised by the gguf package."""
    from gguf import quants
    from gguf.constants import GGML_QUANT_SIZES
    block, block_bytes = GGML_QUANT_SIZES[tensor_type]
    return wtypes.foreign(tensor_type.name.lower(), int(tensor_type), block, block_bytes,
                          lambda raw: quants.dequantize(raw, tensor_type).reshape(len(raw), block))


def stored_tensor(t, path):
    """A tensor as the file stores it: a float32 array (F32 tensors and every vector), else a
    Packed matrix of its GGUF type. Matrices are read-only views of the reader's memory map of
    the file, not copies: an engine that lays them out anew lets the kernel drop their pages
    from memory (LoadedModel.release_pages), and one that reads them as stored shares them.
    """
    shape = [int(n) for n in reversed(t.shape)]
    wtype = wtypes.BY_GGUF.get(int(t.tensor_type)) or _foreign(t.tensor_type)
    if wtype is wtypes.F32:
        return np.array(t.data, np.float32).reshape(shape) if len(shape) == 1 else t.data.reshape(shape)
    raw = t.data.view(np.uint8).reshape(shape[0] if len(shape) == 2 else 1, -1)
    packed = wtypes.Packed(wtype, shape if len(shape) == 2 else (1, shape[0]), raw)
    if len(shape) == 1:  # norms and other vectors are float32 everywhere
        return packed.to_float().reshape(shape)
    return packed


def gguf_weights(reader, cfg, path):
    """{our name: weight as stored} of every tensor but the config's (rope_freqs)."""
    weights, permuted = {}, cfg.arch.gguf_permuted_qk
    for t in reader.tensors:
        if t.name == _ROPE_FREQS:
            continue
        try:
            w = stored_tensor(t, path)
        except (ValueError, NotImplementedError, KeyError) as e:
            raise CheckpointError(f"{path}: cannot read {t.name} ({t.tensor_type.name}): {e}") from None
        for suffix, heads in (("attn_q.weight", cfg.num_heads), ("attn_k.weight", cfg.num_kv_heads)):
            if permuted and t.name.endswith(suffix):  # whole rows move: a quantised row's blocks stay as they are
                order = unpermute(np.arange(w.shape[0]), heads)
                w = w.take_rows(order) if isinstance(w, wtypes.Packed) else np.ascontiguousarray(w[order])
        weights[_our_name(t.name, cfg.arch)] = w
    return weights


def load_gguf(path):
    """(ModelConfig, weights, tokenizer) from a GGUF file of a family cold_ms runs (architectures.BY_GGUF_ARCH)."""
    from cold_ms.formats.names import check_weights
    from cold_ms.formats.gguf_vocab import gguf_tokenizer
    reader = open_gguf(path)
    cfg = gguf_config(reader, path)
    tokenizer = gguf_tokenizer(reader, path)
    # The metadata as parsed (small arrays per vocabulary entry: 150 MB for SmolLM2's 49k
    # tokens and merges) is done with: dropped before the weights are read, so the load
    # does not peak with both.
    reader.fields.clear()
    weights = gguf_weights(reader, cfg, path)
    check_weights(cfg, weights, path)
    return cfg, weights, tokenizer
