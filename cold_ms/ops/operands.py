"""What the C++ kernels and Python agree on, declared once: the whole-layer kernel's operands,
the weight types' codes and the columns of the next-token choice's `extra` knobs. `generated_header` writes both as C++ (an enum and a table
each) into the kernel build, so the ops.Custom call (ops/decode.py), the kernel
(custom_ops/cpu/layer.cc, wtypes.h) and the ctypes test harness read the same list.
(name, kind): kind "f32" float32 data, "int" int32, "weight" a projection (float32 rows or
panels, or uint8 rows of blocks or integer panels; its kind in `wtypes`), "lora" an adapter
stack (float32, float16 or bfloat16, A and B alike; a float32 (1, 1, 1) placeholder where the
module has no slots); "cache" a layer's KV cache (float32, float16 or bfloat16, k and v alike:
the engine's kv_dtype); "opt" a float32 vector the family may not have (cold_ms.architectures:
q/k/v biases, q/k norms, the sandwich norms on the attention and MLP outputs; a (1,) placeholder
where it has none).
"""
from cold_ms.architectures import ACTIVATIONS
from cold_ms.ops.contrastive import EXTRA
from cold_ms.wtypes import TYPES

LAYER = (
    # what changes from call to call: the graph's inputs
    ("h", "f32"), ("cos", "f32"), ("sin", "f32"), ("pos", "int"), ("crow", "int"), ("idx", "int"),
    # the layer's own state, gathered once per layer (`static`)
    ("ln1", "f32"), ("eps1", "f32"),
    ("wq", "weight"), ("wk", "weight"), ("wv", "weight"),
    ("aq", "lora"), ("bq", "lora"), ("ak", "lora"), ("bk", "lora"), ("av", "lora"), ("bv", "lora"),
    ("q_bias", "opt"), ("k_bias", "opt"), ("v_bias", "opt"), ("q_norm", "opt"), ("k_norm", "opt"),
    ("k_cache", "cache"), ("v_cache", "cache"), ("len", "int"),
    ("attn", "int"),    # (2,): this layer's sliding window (0: global), MLP activation (its ACTIVATIONS index)
    ("scale", "f32"),   # (1,): the attention logits' scale
    ("wo", "weight"), ("ao", "lora"), ("bo", "lora"), ("attn_out_norm", "opt"),
    ("ln2", "f32"), ("eps2", "f32"),
    ("wg", "weight"), ("ag", "lora"), ("bg", "lora"),
    ("wu", "weight"), ("au", "lora"), ("bu", "lora"),
    ("wd", "weight"), ("ad", "lora"), ("bd", "lora"), ("mlp_out_norm", "opt"),
    ("wtypes", "int"),  # (7, 2): (type code, activation bits) of wq .. wd in order
    ("out", "f32"),
)
NAMES = tuple(name for name, _ in LAYER)
DYNAMIC = NAMES[:6]  # h (R, T, d); cos, sin (R, T, D); pos (R, T); crow (R,); idx (R,) LoRA slots
STATIC = NAMES[6:-1]
WEIGHTS = tuple(name for name, kind in LAYER if kind == "weight")  # the order of `wtypes`


def static(**operands):
    """The layer's own operands by name -> the tuple, in the declared order, the kernel takes after
    the dynamic ones (built once, outside the graph: assembling it in the graph from keywords
    cost 16 s of compile time per graph)."""
    missing = set(STATIC) ^ set(operands)
    if missing:
        raise ValueError(f"layer operands: {sorted(missing)} missing or unknown")
    return tuple(operands[name] for name in STATIC)


def _enum(prefix, names, count):
    items = ", ".join(f"k{prefix}{n.title().replace('_', '')}" for n in names)
    return f"enum : int {{ {items}, {count} }};"


def generated_header():
    """C++ for custom_ops/cpu: the layer operands' enum and kinds, the weight types' enum and table."""
    kinds = ", ".join(f'"{kind}"' for _, kind in LAYER)
    weights = ", ".join(f"k{'Op'}{n.title()}" for n in WEIGHTS)
    types = sorted(TYPES.values(), key=lambda t: t.code)
    assert [t.code for t in types] == list(range(len(types))), "weight type codes must be 0..n-1"
    wcodes = ", ".join(f"k{t.name.upper()}" for t in types)
    table = ",\n    ".join(f'{{"{t.name}", {t.block}, {t.block_bytes}, {t.panel_bytes}, {t.name.upper()}ToFloat}}'
                          for t in types)
    return "\n".join([
        "// Generated from cold_ms/ops/operands.py and cold_ms/wtypes.py when the kernels are built.",
        "#pragma once",
        "#include <cstdint>",
        "namespace cold {",
        _enum("Op", NAMES, "kLayerOperands"),
        f"constexpr const char* kLayerKinds[kLayerOperands] = {{{kinds}}};",
        f"constexpr int kLayerWeights[] = {{{weights}}};",
        f"enum WCode : int32_t {{ {wcodes}, kNumWTypes }};",
        _enum("Ex", EXTRA, "kExtra"),
        _enum("Act", ACTIVATIONS, "kActivations"),  # the MLP activation codes of the `attn` operand
        "#define COLD_WTYPE_TABLE \\",
        "    " + table.replace("\n", " \\\n"),
        "}  // namespace cold",
        "",
    ])
