"""GGUF (llama.cpp) checkpoints -> ModelConfig + weights as stored + tokenizer.

Matrices stay in their stored type (Q4_0/Q4_1/Q8_0/K-quants/F16/BF16/..., cold_ms.wtypes.Packed;
F32 as float32 arrays): an engine chooses what to read them as (cold_ms/ops/prepare.py).
llama.cpp stores LLaMA's Q and K rows permuted for its interleaved rotary layout; they are
permuted back to the HF rotate-half layout here (whole rows: the stored blocks are unchanged).
"""
import os
import re

import numpy as np

from cold_ms import wtypes
from cold_ms.config import ModelConfig
from cold_ms.errors import CheckpointError
from cold_ms.fields import REQUIRED, Fields

SUPPORTED_ARCHS = ("llama",)
_NAMES = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
          "output.weight": "lm_head.weight"}
_LAYER = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
          "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
          "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
          "ffn_down": "mlp.down_proj"}


def open_gguf(path):
    import gguf
    try:
        return gguf.GGUFReader(path)
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


def gguf_config(reader, path):
    """The ModelConfig of a GGUF file's metadata, every key it uses checked here."""
    names = {t.name for t in reader.tensors}
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    # scalars only: the tokenizer's arrays are large and read by gguf_vocab
    meta = Fields({k: f.contents() for k, f in reader.fields.items() if not k.startswith("tokenizer.ggml.")
                   or k in ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id")}, path, "metadata")
    arch = meta.text("general.architecture")
    if arch not in SUPPORTED_ARCHS:
        meta.refuse(f"GGUF architecture '{arch}' is not supported yet (supported: {', '.join(SUPPORTED_ARCHS)})")
    key = lambda k: f"{arch}.{k}"  # noqa: E731
    heads, dim = meta.int(key("attention.head_count")), meta.int(key("embedding_length"))
    scaling = meta.text(key("rope.scaling.type"), "none")
    if scaling != "none":
        meta.refuse(f"rope scaling '{scaling}' is not supported")
    if meta.int(key("rope.dimension_count"), dim // heads) != dim // heads:
        meta.refuse("partial rotary embeddings are not supported")
    eos = meta.int("tokenizer.ggml.eos_token_id", None, minimum=0)
    return meta.build(
        ModelConfig, vocab_size=meta.int(key("vocab_size"), len(tokens.data) if tokens else REQUIRED),
        hidden_size=dim, intermediate_size=meta.int(key("feed_forward_length")),
        num_layers=meta.int(key("block_count")), num_heads=heads,
        num_kv_heads=meta.int(key("attention.head_count_kv"), heads),
        rms_norm_eps=_f32_value(meta.number(key("attention.layer_norm_rms_epsilon"), 1e-5)),
        rope_theta=_f32_value(meta.number(key("rope.freq_base"), 10000.0)),
        max_position_embeddings=meta.int(key("context_length"), 2048),
        tie_word_embeddings="output.weight" not in names,
        bos_token_id=meta.int("tokenizer.ggml.bos_token_id", None, minimum=0),
        eos_token_ids=() if eos is None else (eos,),
        name=display_name(path, meta.text("general.organization", "")))


def display_name(path, organization=""):
    """A GGUF model's name as the hub knows it: ORGANIZATION/FILE-STEM without its quantisation
    suffix ('HuggingFaceTB/SmolLM2-135M-Instruct' for SmolLM2-135M-Instruct.Q4_1.gguf), a loadable
    id for trained adapters' base_model_name_or_path. general.name is the converter's title-cased
    guess ('Smollm2 135M 8k Lc100K Mix1 Ep2')."""
    stem = re.sub(r"[.-](q\d\w*|iq\d\w*|f16|f32|bf16)$", "", os.path.basename(path)[:-len(".gguf")],
                  flags=re.IGNORECASE) or "gguf"
    return f"{organization}/{stem}" if organization and "/" not in organization else stem


def _our_name(name):
    if name in _NAMES:
        return _NAMES[name]
    parts = name.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[2] in _LAYER:
        return f"model.layers.{parts[1]}.{_LAYER[parts[2]]}.{parts[3]}"
    raise CheckpointError(f"unexpected GGUF tensor {name} for a LLaMA model")


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
    weights = {}
    for t in reader.tensors:
        try:
            w = stored_tensor(t, path)
        except (ValueError, NotImplementedError, KeyError) as e:
            raise CheckpointError(f"{path}: cannot read {t.name} ({t.tensor_type.name}): {e}") from None
        for suffix, heads in (("attn_q.weight", cfg.num_heads), ("attn_k.weight", cfg.num_kv_heads)):
            if t.name.endswith(suffix):  # whole rows move: a quantised row's blocks stay as they are
                order = unpermute(np.arange(w.shape[0]), heads)
                w = w.take_rows(order) if isinstance(w, wtypes.Packed) else np.ascontiguousarray(w[order])
        weights[_our_name(t.name)] = w
    return weights


def load_gguf(path):
    """(ModelConfig, weights, tokenizer) from a LLaMA-architecture GGUF file."""
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
