"""Tiny GGUF files written with the `gguf` package's own writer (llama.cpp's conventions)."""
import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

GGUF_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
              "lm_head.weight": "output.weight"}
LAYER = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
         "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
         "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
         "mlp.down_proj": "ffn_down"}


def gguf_name(hf):
    if hf in GGUF_NAMES:
        return GGUF_NAMES[hf]
    _, _, layer, rest = hf.split(".", 3)
    module, kind = rest.rsplit(".", 1)
    return f"blk.{layer}.{LAYER[module]}.{kind}"


def llama_cpp_permute(w, heads):
    """convert_hf_to_gguf.py's Q/K permutation (HF rotate-half rows -> interleaved pairs)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def quant_roundtrip(w, qtype):
    return gguf.quants.dequantize(gguf.quants.quantize(w, qtype), qtype).reshape(w.shape).astype(np.float32)


def write_gguf(path, cfg, weights, vocab, arch="llama", quant=Q.Q8_0, types=None):
    """Write weights (HF names, HF layout) as llama.cpp would; returns the weights as stored
    after quantisation, in HF layout. `vocab` is a dict of tokenizer.ggml.* fields. Matrices
    whose rows are whole blocks of 32 are quantised to `quant` (ffn_up to Q4_1), or to
    types[part] for the first GGUF name part (e.g. "ffn_down") found in `types`."""
    w = gguf.GGUFWriter(path, arch)
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    _metadata(w, cfg, vocab)
    stored = {}
    for name, array in weights.items():
        if name.endswith("q_proj.weight"):
            array_g = llama_cpp_permute(array, heads)
        elif name.endswith("k_proj.weight"):
            array_g = llama_cpp_permute(array, kv)
        else:
            array_g = array
        if array.ndim == 2 and array.shape[1] % 32 == 0:
            named = [q for part, q in (types or {}).items() if part in gguf_name(name)]
            qtype = named[0] if named else Q.Q4_1 if "ffn_up" in gguf_name(name) else quant
            w.add_tensor(gguf_name(name), gguf.quants.quantize(array_g, qtype), raw_dtype=qtype)
            stored[name] = quant_roundtrip(array, qtype)
        else:
            w.add_tensor(gguf_name(name), array_g.astype(np.float32))
            stored[name] = array.astype(np.float32)
    _finish(w)
    return stored


def _metadata(w, cfg, vocab):
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_vocab_size(cfg["vocab_size"])
    w.add_tokenizer_model(vocab["model"])
    if "pre" in vocab:
        w.add_tokenizer_pre(vocab["pre"])
    w.add_token_list(vocab["tokens"])
    w.add_token_types(vocab["types"])
    if "merges" in vocab:
        w.add_token_merges(vocab["merges"])
    if "scores" in vocab:
        w.add_token_scores(vocab["scores"])
    w.add_bos_token_id(vocab["bos"])
    w.add_eos_token_id(vocab["eos"])
    w.add_add_bos_token(vocab.get("add_bos", True))
    if "chat_template" in vocab:
        w.add_chat_template(vocab["chat_template"])
    if "eot" in vocab:
        w.add_eot_token_id(vocab["eot"])
    if "add_space_prefix" in vocab:
        w.add_add_space_prefix(vocab["add_space_prefix"])
    if "unk" in vocab:
        w.add_unk_token_id(vocab["unk"])


def _finish(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def llama3_rope_factors(cfg):
    """convert_hf_to_gguf.py's rope_freqs tensor of a Llama 3.1 rope_scaling (theta_i is divided by it)."""
    s, dim = cfg["rope_scaling"], cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    freqs = 1.0 / cfg["rope_theta"] ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    low_wavelen = s["original_max_position_embeddings"] / s["low_freq_factor"]
    high_wavelen = s["original_max_position_embeddings"] / s["high_freq_factor"]
    factors = []
    for freq in freqs:
        wavelen = 2 * np.pi / freq
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(s["factor"])
        else:
            smooth = (s["original_max_position_embeddings"] / wavelen - s["low_freq_factor"]) / \
                (s["high_freq_factor"] - s["low_freq_factor"])
            factors.append(1 / ((1 - smooth) / s["factor"] + smooth))
    return np.array(factors, np.float32)


def write_family_gguf(path, cfg, weights, vocab, arch):
    """A GGUF of HF `weights` (HF names and layout, norms as HF stores them) and HF config `cfg`, as
    llama.cpp's converter writes architecture `arch` (llama, qwen2, qwen3, gemma3): tensor names from
    the gguf package's own map, all float32; Gemma's norms stored as 1 + w; LLaMA's Q/K permuted;
    head_dim as key_length; Gemma 3's sliding window; Llama 3's rope scaling as a rope_freqs tensor."""
    w = gguf.GGUFWriter(path, arch)
    layers, heads, kv = cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    _metadata(w, cfg, vocab)
    if "head_dim" in cfg:
        w.add_key_length(cfg["head_dim"])
        w.add_value_length(cfg["head_dim"])
    if arch == "gemma3":
        w.add_sliding_window(cfg["sliding_window"])
    if (cfg.get("rope_scaling") or {}).get("rope_type") == "llama3":
        w.add_tensor("rope_freqs.weight", llama3_rope_factors(cfg))
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], layers)
    for name, array in weights.items():
        base, kind = name.rsplit(".", 1)
        if arch == "gemma3" and name.endswith("norm.weight"):
            array = array + np.float32(1)
        elif arch == "llama" and name.endswith(("q_proj.weight", "k_proj.weight")):
            array = llama_cpp_permute(array, heads if "q_proj" in name else kv)
        w.add_tensor(f"{names.get_name(base)}.{kind}", np.ascontiguousarray(array, np.float32))
    _finish(w)


def bpe_vocab(texts, vocab_size=300, specials=("<unk>", "<s>", "</s>")):
    """A byte-level BPE trained with `tokenizers`, as GGUF tokenizer fields (+ the Tokenizer);
    `specials` are control tokens (ids 0, 1, ...; BOS 1, EOS 2)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    import json
    model = json.loads(tok.to_str())["model"]
    tokens = [t for t, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    types = [3 if t in specials else 1 for t in tokens]
    return {"model": "gpt2", "pre": "default", "tokens": tokens, "types": types, "merges": merges,
            "bos": 1, "eos": 2, "add_bos": True}, tok


def spm_vocab(sp_path):
    """GGUF tokenizer fields of a sentencepiece model, as convert_hf_to_gguf.py writes them."""
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=sp_path)
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        types.append(2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 6 if sp.is_byte(i)
                     else 5 if sp.is_unused(i) else 1)
    return {"model": "llama", "tokens": tokens, "scores": scores, "types": types,
            "bos": sp.bos_id(), "eos": sp.eos_id(), "add_bos": True}
