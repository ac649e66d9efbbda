"""Single-op RMSNorm, whole-layer and next-token ops (custom CPU kernels).

Used by the Cells when the backend is "custom" on the CPU. A layer written with MindSpore
ops is some eighty kernels: at decode sizes their launches cost more than the arithmetic,
and every kernel of a compiled prompt-chunk graph holds memory for the life of the process;
LayerStep does the same work as one op, for decode steps and prompt chunks. The MindSpore
formulations in the Cells remain the twin (the "gather" backend, training) and the test oracle.
"""
import numpy as np
import mindspore as ms
from mindspore import ops, Tensor

from cold_ms.architectures import ACTIVATIONS
from cold_ms.ops import operands

# The LoRA operand of a module without adapter slots; the kernels recognise its shape.
NO_LORA = Tensor(np.zeros((1, 1, 1), np.float32))
# The operand of a bias or norm a family does not have (a layer's vectors are never of length 1).
NO_BIAS = Tensor(np.zeros((1,), np.float32))

_RMS_NORM = None
_LAYER = None
_SELECT = {}
_ARGMAX = None


def _same(x, *rest):
    return x


def _ids_shape(logits, *rest):
    return [rest[0][0]] if rest else [logits[0]]  # ColdSelect: one id per slot of alpha (S,)


def _ids_type(*args):
    return ms.int32


def register_cpu(library):
    global _RMS_NORM, _LAYER, _ARGMAX
    _RMS_NORM = ops.Custom(f"{library}:RmsNorm", _same, _same, func_type="aot")
    _LAYER = ops.Custom(f"{library}:LayerStep", _same, _same, func_type="aot")
    _ARGMAX = ops.Custom(f"{library}:FirstArgmax", _ids_shape, _ids_type, func_type="aot")
    for mask, entry in (("logit", "ColdSelectLogit"), ("prob", "ColdSelectProb")):
        _SELECT[mask] = ops.Custom(f"{library}:{entry}", _ids_shape, _ids_type, func_type="aot")
        _SELECT[mask, "extra"] = ops.Custom(f"{library}:{entry}", _ids_shape, _ids_type, func_type="aot")


def first_argmax(scores):
    """Lowest index of each row's maximum: (N, V) -> (N,) int32; contrastive.first_argmax's twin."""
    return _ARGMAX(scores)


def cold_select(logits, alpha, beta, mask, extra=None):
    """CoLD's next ids (S,) from [expert rows | amateur rows] logits (2S, V), or expert rows
    alone (S, V); alpha, beta (S,); extra (S, 4) the knobs of contrastive.EXTRA (schedule,
    temperature, top_p, uniform), none = fixed beta, argmax.

    The twin of contrastive.cold_select (contrastive.choose with extra) on the two halves of logits.
    """
    if extra is None:
        return _SELECT[mask](logits, alpha, beta)
    return _SELECT[mask, "extra"](logits, alpha, beta, extra)


def rms_norm(x, weight, eps):
    """weight * x / sqrt(mean(x^2, -1) + eps); eps a (1,) float32 tensor."""
    return _RMS_NORM(x, weight, eps)


def layer_state(layer, cfg):
    """The layer kernel's own operands of DecoderLayer `layer` (operands.STATIC), gathered once per
    Cell; the family's optional vectors as placeholders where it has none."""
    a, m = layer.self_attn, layer.mlp
    projs = {"q": a.q_proj, "k": a.k_proj, "v": a.v_proj, "o": a.o_proj, "g": m.gate_proj, "u": m.up_proj,
             "d": m.down_proj}
    pairs = {}
    for short, proj in projs.items():
        pairs[f"a{short}"], pairs[f"b{short}"] = proj.lora_pair()
        pairs[f"w{short}"] = proj.weight
    mlp_in = layer.pre_feedforward_layernorm if layer.sandwich else layer.post_attention_layernorm
    kinds = np.array([projs[name[1]].kind for name in operands.WEIGHTS], np.int32)  # wq .. wd
    norms = (a.q_norm.weight, a.k_norm.weight) if a.qk_norm else (NO_BIAS, NO_BIAS)
    return operands.static(
        ln1=layer.input_layernorm.weight, eps1=layer.input_layernorm.eps_t, **pairs,
        q_bias=a.q_proj.bias_or_none(), k_bias=a.k_proj.bias_or_none(), v_bias=a.v_proj.bias_or_none(),
        q_norm=norms[0], k_norm=norms[1], k_cache=a.cache.k_cache, v_cache=a.cache.v_cache,
        len=a.cache.length_t,
        attn=Tensor(np.array([layer.window, ACTIVATIONS.index(cfg.arch.activation)], np.int32)),
        scale=Tensor(np.array([cfg.attn_scale], np.float32)),
        attn_out_norm=layer.post_attention_layernorm.weight if layer.sandwich else NO_BIAS,
        ln2=mlp_in.weight, eps2=mlp_in.eps_t,
        mlp_out_norm=layer.post_feedforward_layernorm.weight if layer.sandwich else NO_BIAS,
        wtypes=Tensor(kinds))


def layer(h, cos, sin, positions, cache_rows, lora_idx, state):
    """h + attention + gated MLP of one layer (with its family's differences) for h (R, T, d); cos, sin (R, T, D); positions
    (R, T); cache_rows (R,) the cache row of each row; state: layer_state(...) (the operands in
    operands.DYNAMIC come first, in that order).

    Writes the tokens' k, v into the layer's KVCache Parameters in place, at their positions,
    before attending over them (token t of a row sees the keys at positions <= its own).
    """
    return _LAYER(h, cos, sin, positions.astype(ms.int32), cache_rows.astype(ms.int32), lora_idx, *state)
