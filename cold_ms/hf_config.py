"""HF `config.json` <-> ModelConfig for every family of cold_ms.architectures.

Reads the spellings of transformers 4 (rope_scaling, rope_local_base_freq, sliding_window_pattern)
and 5 (rope_parameters, per layer type for Gemma 3; layer_types); refuses, naming the field,
what no path of cold_ms computes (other rope scalings, attention soft-capping, biases beyond
a family's, vision towers, mixture-of-experts types).
"""
from cold_ms.architectures import BY_MODEL_TYPE, FAMILIES
from cold_ms.fields import Fields

_ACTIVATIONS = {"silu": "silu", "swish": "silu", "gelu_pytorch_tanh": "gelu_tanh"}
_ROPE_FIELDS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
_SLIDING, _FULL = "sliding_attention", "full_attention"


def _family(f):
    model_type = f.text("model_type", "llama")
    if not f.empty("vision_config"):
        f.refuse("'vision_config': vision towers are not supported (give the text model: Gemma3ForCausalLM, "
                 "model_type gemma3_text)")
    family = BY_MODEL_TYPE.get(model_type)
    if family is None:
        f.refuse(f"model_type '{model_type}' is not supported (supported: {', '.join(BY_MODEL_TYPE)})")
    act_key = "hidden_activation" if "hidden_activation" in f.doc else "hidden_act"
    act = f.text(act_key, None)
    if act is not None and _ACTIVATIONS.get(act) != family.activation:
        f.refuse(f"'{act_key}' {act!r} is not the {family.name} family's MLP activation "
                 f"({family.activation})")
    if f.flag("attention_bias") and not family.qkv_bias:
        f.refuse("'attention_bias': attention biases are not supported for this family")
    if f.flag("mlp_bias"):
        f.refuse("'mlp_bias': MLP biases are not supported")
    if f.doc.get("attn_logit_softcapping") is not None:
        f.refuse("'attn_logit_softcapping': attention logit soft-capping is not supported")
    return family


def _rope_scaling(section):
    """(("rope_type", kind), (field, value), ...) of a rope scaling mapping; () for none."""
    kind = section.text("rope_type", section.text("type", "default"))
    if kind == "default":
        return ()
    if kind not in ("linear", "llama3"):
        section.refuse(f"rope type '{kind}' is not supported (supported: default, linear, llama3)")
    wanted = ("factor",) if kind == "linear" else _ROPE_FIELDS
    return (("rope_type", kind),) + tuple((name, section.number(name)) for name in wanted)


def _rope(f, family):
    """(rope_theta, rope_scaling, rope_local_theta)."""
    params = f.section("rope_parameters")
    if _FULL in params.doc or _SLIDING in params.doc:  # transformers 5, per layer type (Gemma 3)
        full, local = params.section(_FULL), params.section(_SLIDING)
        return (full.number("rope_theta", f.number("rope_theta", 10000.0)), _rope_scaling(full),
                local.number("rope_theta", 10000.0))
    scaling = f.section("rope_scaling") if not f.empty("rope_scaling") else params
    theta = params.number("rope_theta", f.number("rope_theta", 10000.0))
    local = f.number("rope_local_base_freq", 10000.0) if family.name == "gemma3" else 0.0
    return theta, _rope_scaling(scaling), local


def _windows(f, family, layers):
    """The sliding window of every layer (0: global)."""
    window = f.int("sliding_window", 0, minimum=0)
    if not f.empty("layer_types"):
        types = f.doc["layer_types"]
        if not isinstance(types, list) or len(types) != layers or set(types) - {_SLIDING, _FULL}:
            f.refuse(f"'layer_types' must list '{_SLIDING}' or '{_FULL}' for each of the {layers} layers")
        kinds = [t == _SLIDING for t in types]
    elif family.name == "gemma3":  # transformers 4: every pattern-th layer global
        pattern = f.int("sliding_window_pattern", 6)
        kinds = [(i + 1) % pattern != 0 for i in range(layers)]
    elif family.name in ("qwen2", "qwen3"):  # sliding_window counts only with use_sliding_window
        first = f.int("max_window_layers", layers, minimum=0)
        kinds = [f.flag("use_sliding_window") and i >= first for i in range(layers)]
    else:
        kinds = [bool(window)] * layers  # Mistral: every layer, when set
    if any(kinds) and not window:
        f.refuse("'sliding_window' must be set for sliding-window layers")
    return tuple(window if k else 0 for k in kinds)


def from_hf(cls, cfg, name, where):
    f = Fields(cfg, where)
    family = _family(f)
    heads, layers = f.int("num_attention_heads"), f.int("num_hidden_layers")
    theta, scaling, local = _rope(f, family)
    return f.build(
        cls, vocab_size=f.int("vocab_size"), hidden_size=f.int("hidden_size"),
        intermediate_size=f.int("intermediate_size"), num_layers=layers,
        num_heads=heads, num_kv_heads=f.int("num_key_value_heads", heads),
        rms_norm_eps=f.number("rms_norm_eps", 1e-6), rope_theta=theta,
        max_position_embeddings=f.int("max_position_embeddings", 2048),
        tie_word_embeddings=f.flag("tie_word_embeddings", family.name == "gemma3"),
        bos_token_id=f.int("bos_token_id", None, minimum=0), eos_token_ids=f.token_ids("eos_token_id"),
        head_dim=f.int("head_dim", 0), name=name, family=family.name, layer_windows=_windows(f, family, layers),
        rope_local_theta=local, rope_scaling=scaling,
        query_pre_attn_scalar=f.number("query_pre_attn_scalar", 0.0) if family.name == "gemma3" else 0.0,
        final_logit_softcapping=f.number("final_logit_softcapping", 0.0))


_HF_CLASSES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
               "gemma3": "Gemma3ForCausalLM"}


def to_hf(c):
    """A HF config.json dict of ModelConfig `c` (from_hf reads it back to `c`)."""
    from cold_ms.errors import ConfigError
    if c.rope_freq_factors:
        raise ConfigError("a rope with per-frequency factors (a GGUF's rope_freqs) has no HF config.json form")
    family = FAMILIES[c.family]
    out = {"model_type": family.hf_model_types[0], "architectures": [_HF_CLASSES[c.family]],
           "vocab_size": c.vocab_size, "hidden_size": c.hidden_size, "intermediate_size": c.intermediate_size,
           "num_hidden_layers": c.num_layers, "num_attention_heads": c.num_heads,
           "num_key_value_heads": c.num_kv_heads, "head_dim": c.head_dim, "rms_norm_eps": c.rms_norm_eps,
           "rope_theta": c.rope_theta, "max_position_embeddings": c.max_position_embeddings,
           "tie_word_embeddings": c.tie_word_embeddings, "bos_token_id": c.bos_token_id,
           "eos_token_id": list(c.eos_token_ids), "torch_dtype": "float32",
           "hidden_act" if c.family != "gemma3" else "hidden_activation":
               "silu" if family.activation == "silu" else "gelu_pytorch_tanh"}
    if c.rope_scaling:
        out["rope_scaling"] = dict(c.rope_scaling)
    if any(c.layer_windows):
        out["sliding_window"] = max(c.layer_windows)
        out["layer_types"] = [_SLIDING if w else _FULL for w in c.layer_windows]
        if c.family in ("qwen2", "qwen3"):
            out["use_sliding_window"] = True
    if c.family == "gemma3":
        out.update(rope_local_base_freq=c.rope_local_theta, query_pre_attn_scalar=c.query_pre_attn_scalar)
    if c.family == "qwen2":
        out["attention_bias"] = True
    if c.final_logit_softcapping:
        out["final_logit_softcapping"] = c.final_logit_softcapping
    return out
