"""Tiny checkpoints in real HF / PEFT formats, written with `safetensors` (and by hand for bf16)."""
import json
import os

import numpy as np
from safetensors.numpy import save_file

# What the suite's workers set to hold their threads to their share of the cores (conftest.py).
THREAD_LIMITS = ("COLD_MS_KERNEL_THREADS", "OMP_NUM_THREADS")

TINY = {"model_type": "llama", "vocab_size": 96, "hidden_size": 32, "intermediate_size": 48,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 128,
        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2}
PROJ_DIMS = {"q_proj": ("h", "q"), "k_proj": ("h", "kv"), "v_proj": ("h", "kv"),
             "o_proj": ("q", "h"), "gate_proj": ("h", "f"), "up_proj": ("h", "f"),
             "down_proj": ("f", "h")}


def _dims(cfg):
    hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    return {"h": cfg["hidden_size"], "f": cfg["intermediate_size"],
            "q": cfg["num_attention_heads"] * hd, "kv": cfg["num_key_value_heads"] * hd}


def _parent(module):
    return "self_attn" if module in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"


def random_weights(cfg, seed=0, scale=0.4):
    rng = np.random.default_rng(seed)
    dims = _dims(cfg)
    w = {"model.embed_tokens.weight": rng.standard_normal((cfg["vocab_size"], dims["h"])),
         "model.norm.weight": 1 + 0.1 * rng.standard_normal(dims["h"])}
    if not cfg.get("tie_word_embeddings"):
        w["lm_head.weight"] = rng.standard_normal((cfg["vocab_size"], dims["h"])) * scale
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = 1 + 0.1 * rng.standard_normal(dims["h"])
        w[p + "post_attention_layernorm.weight"] = 1 + 0.1 * rng.standard_normal(dims["h"])
        for m, (i_in, i_out) in PROJ_DIMS.items():
            n_in = dims[i_in]
            w[p + f"{_parent(m)}.{m}.weight"] = rng.standard_normal((dims[i_out], n_in)) * scale / np.sqrt(n_in) * 4
    return {k: v.astype(np.float32) for k, v in w.items()}


def write_bf16_safetensors(path, tensors):
    """safetensors writer for bfloat16 (numpy has no bf16): header + truncated-f32 bytes."""
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        bits = (np.ascontiguousarray(array, np.float32).view(np.uint32) >> 16).astype("<u2")
        blob = bits.tobytes()
        header[name] = {"dtype": "BF16", "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw + b"".join(blobs))


def bf16_round(array):
    """What a bf16 checkpoint stores for `array` (truncation, as write_bf16_safetensors does)."""
    return ((np.asarray(array, np.float32).view(np.uint32) >> 16) << 16).view(np.float32)


def write_model(path, cfg=None, seed=0, dtype="float32", shards=1, weights=None):
    """A HF LLaMA model directory; returns (cfg, weights as stored, in float32)."""
    cfg = dict(TINY if cfg is None else cfg)
    os.makedirs(path, exist_ok=True)
    w = weights if weights is not None else random_weights(cfg, seed)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f)
    names = sorted(w)
    parts = [names[i::shards] for i in range(shards)]
    files = ["model.safetensors"] if shards == 1 else \
        [f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(shards)]
    for fname, part in zip(files, parts):
        chunk = {n: w[n] for n in part}
        target = os.path.join(path, fname)
        if dtype == "bfloat16":
            write_bf16_safetensors(target, chunk)
        else:
            save_file({n: a.astype(dtype) for n, a in chunk.items()}, target)
    if shards > 1:
        index = {"metadata": {}, "weight_map": {n: f for f, part in zip(files, parts) for n in part}}
        with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
            json.dump(index, f)
    stored = {n: (bf16_round(a) if dtype == "bfloat16" else a.astype(dtype).astype(np.float32))
              for n, a in w.items()}
    return cfg, stored


def write_adapter(path, cfg, rank=4, alpha=8, targets=("q_proj", "v_proj"), seed=1, scale=0.3,
                  layers=None, dtype="float32", scale_b=None):
    """A PEFT LoRA adapter directory saved in `dtype` (lora_A values of size `scale`, lora_B of
    `scale_b`, default the same); returns {"tensors": {...} (the stored values, as float32),
    "scaling": alpha/r}."""
    rng = np.random.default_rng(seed)
    dims = _dims(cfg)
    tensors = {}
    for i in (range(cfg["num_hidden_layers"]) if layers is None else layers):
        for m in targets:
            i_in, i_out = PROJ_DIMS[m]
            base = f"base_model.model.model.layers.{i}.{_parent(m)}.{m}"
            tensors[base + ".lora_A.weight"] = (rng.standard_normal((rank, dims[i_in])) * scale).astype(np.float32)
            tensors[base + ".lora_B.weight"] = (rng.standard_normal((dims[i_out], rank))
                                                * (scale if scale_b is None else scale_b)).astype(np.float32)
    os.makedirs(path, exist_ok=True)
    target = os.path.join(path, "adapter_model.safetensors")
    if dtype == "bfloat16":
        write_bf16_safetensors(target, tensors)
        tensors = {n: bf16_round(a) for n, a in tensors.items()}
    else:
        save_file({n: a.astype(dtype) for n, a in tensors.items()}, target)
        tensors = {n: a.astype(dtype).astype(np.float32) for n, a in tensors.items()}
    with open(os.path.join(path, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "r": rank, "lora_alpha": alpha, "target_modules": list(targets),
                   "lora_dropout": 0.0, "bias": "none", "task_type": "CAUSAL_LM",
                   "base_model_name_or_path": "tiny-llama"}, f)
    return {"tensors": tensors, "scaling": alpha / rank}


def user_kernel_cache():
    """The kernel-build folder cold_ms uses outside the tests (runtime.cache_dir's rule), read
    before the test session replaces $COLD_MS_CACHE."""
    root = os.environ.get("COLD_MS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cold_ms")
    path = os.path.join(root, "kernels")
    os.makedirs(path, exist_ok=True)
    return path


def cache_with_kernels(root, kernels=None):
    """A fresh $COLD_MS_CACHE at `root` (compile cache empty) whose kernel builds are shared with
    `kernels` (default: the test session's), so a test of the compile cache builds no kernels."""
    kernels = kernels or os.path.join(os.environ["COLD_MS_CACHE"], "kernels")
    os.makedirs(root, exist_ok=True)
    if not os.path.exists(os.path.join(root, "kernels")):
        os.symlink(kernels, os.path.join(root, "kernels"))
    return root


SP_TEXT = ["The quick brown fox jumps over the lazy dog.", "What is the capital of France? Paris.",
           "Two plus three equals five.", "Contrastive decoding with LoRA adapters on MindSpore.",
           "A small model answers small questions quickly."] * 20


def write_sentencepiece(path, vocab_size=80):
    """Train a tiny BPE sentencepiece model (bos=1, eos=2) and save it at `path`."""
    import io
    import sentencepiece as spm
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(SP_TEXT), model_writer=buf,
                                   vocab_size=vocab_size, model_type="bpe", bos_id=1, eos_id=2,
                                   unk_id=0, pad_id=-1, minloglevel=2)
    with open(path, "wb") as f:
        f.write(buf.getvalue())
