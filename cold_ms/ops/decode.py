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

from cold_ms.ops import operands

# The LoRA operand of a module without adapter slots; the kernels recognise its shape.
NO_LORA = Tensor(np.zeros((1, 1, 1), np.float32))

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


def layer_state(input_norm, attn, post_norm, mlp, wtypes):
    """The layer's own operands of the layer kernel (operands.STATIC), gathered once per Cell;
    wtypes (7, 2): the kinds of the projections q, k, v, o, gate, up, down."""
    a, m = attn, mlp
    aq, bq = a.q_proj.lora_pair()
    ak, bk = a.k_proj.lora_pair()
    av, bv = a.v_proj.lora_pair()
    ao, bo = a.o_proj.lora_pair()
    ag, bg = m.gate_proj.lora_pair()
    au, bu = m.up_proj.lora_pair()
    ad, bd = m.down_proj.lora_pair()
    return operands.static(
        ln1=input_norm.weight, eps1=input_norm.eps_t, wq=a.q_proj.weight, wk=a.k_proj.weight, wv=a.v_proj.weight,
        aq=aq, bq=bq, ak=ak, bk=bk, av=av, bv=bv, k_cache=a.cache.k_cache, v_cache=a.cache.v_cache,
        len=a.cache.length_t, wo=a.o_proj.weight, ao=ao, bo=bo, ln2=post_norm.weight, eps2=post_norm.eps_t,
        wg=m.gate_proj.weight, ag=ag, bg=bg, wu=m.up_proj.weight, au=au, bu=bu, wd=m.down_proj.weight, ad=ad,
        bd=bd, wtypes=wtypes)


def layer(h, cos, sin, positions, cache_rows, lora_idx, state):
    """h + attention + SwiGLU MLP of one layer for h (R, T, d); cos, sin (R, T, D); positions
    (R, T); cache_rows (R,) the cache row of each row; state: layer_state(...) (the operands in
    operands.DYNAMIC come first, in that order).

    Writes the tokens' k, v into the layer's KVCache Parameters in place, at their positions,
    before attending over them (token t of a row sees the keys at positions <= its own).
    """
    return _LAYER(h, cos, sin, positions.astype(ms.int32), cache_rows.astype(ms.int32), lora_idx, *state)
