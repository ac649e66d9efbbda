"""GGUF (llama.cpp) checkpoints -> ModelConfig + fp32 weights + tokenizer.

Tensors are read and dequantised (Q4_0/Q4_1/Q8_0/K-quants/...) by the `gguf` package and
converted to float32 once. llama.cpp stores LLaMA's Q and K rows permuted for its
interleaved rotary layout; they are permuted back to the HF rotate-half layout here.
"""
import numpy as np

from cold_ms.config import ModelConfig
from cold_ms.errors import CheckpointError, ConfigError

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


def field(reader, key, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def _f32_value(x):
    """A float32 metadata value as the decimal it was written from (1e-05, not 9.9999997e-06)."""
    return float(str(np.float32(x)))


def unpermute(w, heads):
    """Undo llama.cpp's Q/K row permutation: its rows are (head, d/2, 2)-ordered, HF's (head, 2, d/2)."""
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_config(reader, path):
    arch = field(reader, "general.architecture")
    if arch not in SUPPORTED_ARCHS:
        raise ConfigError(f"{path}: GGUF architecture '{arch}' is not supported yet "
                          f"(supported: {', '.join(SUPPORTED_ARCHS)})")
    get = lambda key, default=None: field(reader, f"{arch}.{key}", default)  # noqa: E731
    heads, dim = get("attention.head_count"), get("embedding_length")
    if get("rope.scaling.type", "none") not in ("none",):
        raise ConfigError(f"{path}: rope scaling '{get('rope.scaling.type')}' is not supported")
    if get("rope.dimension_count", dim // heads) != dim // heads:
        raise ConfigError(f"{path}: partial rotary embeddings are not supported")
    eos = field(reader, "tokenizer.ggml.eos_token_id")
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    names = {t.name for t in reader.tensors}
    return ModelConfig(
        vocab_size=get("vocab_size") or (len(tokens.data) if tokens else 0),
        hidden_size=dim, intermediate_size=get("feed_forward_length"),
        num_layers=get("block_count"), num_heads=heads,
        num_kv_heads=get("attention.head_count_kv", heads),
        rms_norm_eps=_f32_value(get("attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=_f32_value(get("rope.freq_base", 10000.0)),
        max_position_embeddings=get("context_length", 2048),
        tie_word_embeddings="output.weight" not in names,
        bos_token_id=field(reader, "tokenizer.ggml.bos_token_id"),
        eos_token_ids=() if eos is None else (eos,),
        name=field(reader, "general.name") or "gguf")


def _our_name(name):
    if name in _NAMES:
        return _NAMES[name]
    parts = name.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[2] in _LAYER:
        return f"model.layers.{parts[1]}.{_LAYER[parts[2]]}.{parts[3]}"
    raise CheckpointError(f"unexpected GGUF tensor {name} for a LLaMA model")


def dequantize_tensor(t, slab=4096):
    """A tensor's values as a float32 array of its own, `slab` rows at a time.

    Owning: the reader hands out views of its memory map, and a view kept in the weights
    would keep every file page the loading touched resident (100 MB for the embedded
    SmolLM2) for the life of the process. In slabs: numpy's dequantisation makes several
    full-size temporaries, which put the load's peak 137 MB above the weights.
    """
    from gguf import quants
    data = t.data
    if data.ndim < 2:
        return np.array(quants.dequantize(data, t.tensor_type), np.float32)
    out = np.empty((data.shape[0], int(t.n_elements) // data.shape[0]), np.float32)
    for i in range(0, data.shape[0], slab):
        out[i:i + slab] = quants.dequantize(data[i:i + slab], t.tensor_type)
    return out


def gguf_weights(reader, cfg, path):
    weights = {}
    for t in reader.tensors:
        try:
            array = dequantize_tensor(t)
        except (ValueError, NotImplementedError) as e:
            raise CheckpointError(f"{path}: cannot dequantise {t.name} ({t.tensor_type.name}): {e}") from None
        array = array.reshape([int(n) for n in reversed(t.shape)])
        if t.name.endswith("attn_q.weight"):
            array = unpermute(array, cfg.num_heads)
        elif t.name.endswith("attn_k.weight"):
            array = unpermute(array, cfg.num_kv_heads)
        weights[_our_name(t.name)] = np.ascontiguousarray(array)
    return weights


def load_gguf(path):
    """(ModelConfig, weights, tokenizer) from a LLaMA-architecture GGUF file."""
    from cold_ms.pipeline.checkpoint import check_weights
    from cold_ms.pipeline.gguf_vocab import gguf_tokenizer
    reader = open_gguf(path)
    cfg = gguf_config(reader, path)
    tokenizer = gguf_tokenizer(reader, path)
    # The metadata as parsed (small arrays per vocabulary entry: 150 MB for SmolLM2's 49k
    # tokens and merges) is done with: dropped before the weights are dequantised, so the
    # load does not peak with both.
    reader.fields.clear()
    weights = gguf_weights(reader, cfg, path)
    check_weights(cfg, weights, path)
    return cfg, weights, tokenizer
