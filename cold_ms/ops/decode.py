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

# The LoRA operand of a module without adapter slots; the kernels recognise its shape.
NO_LORA = Tensor(np.zeros((1, 1, 1), np.float32))

_RMS_NORM = None
_LAYER = None
_SELECT = {}
_ARGMAX = None


def _same(x, *rest):
    return x


def _ids_shape(logits, *rest):
    return [logits[0] // 2] if rest else [logits[0]]  # ColdSelect: (2S, V) -> (S,)


def _ids_type(*args):
    return ms.int32


def register_cpu(library):
    global _RMS_NORM, _LAYER, _ARGMAX
    _RMS_NORM = ops.Custom(f"{library}:RmsNorm", _same, _same, func_type="aot")
    _LAYER = ops.Custom(f"{library}:LayerStep", _same, _same, func_type="aot")
    _ARGMAX = ops.Custom(f"{library}:FirstArgmax", _ids_shape, _ids_type, func_type="aot")
    for mask, entry in (("logit", "ColdSelectLogit"), ("prob", "ColdSelectProb")):
        _SELECT[mask] = ops.Custom(f"{library}:{entry}", _ids_shape, _ids_type, func_type="aot")


def available():
    return _RMS_NORM is not None


def fused_layers(backend):
    """Whether inference calls (decode steps and prompt chunks) run the whole-layer kernels."""
    return backend == "custom" and available()


def fused_scoring(backend):
    """Whether the next-token choice runs as one kernel (else contrastive.py's MindSpore ops)."""
    return backend == "custom" and available()


def first_argmax(scores):
    """Lowest index of each row's maximum: (N, V) -> (N,) int32; contrastive.first_argmax's twin."""
    return _ARGMAX(scores)


def cold_select(logits, alpha, beta, mask):
    """CoLD's next ids (S,) from [expert rows | amateur rows] logits (2S, V); alpha, beta (S,).

    The twin of contrastive.cold_select on the two halves of logits.
    """
    return _SELECT[mask](logits, alpha, beta)


def rms_norm(x, weight, eps):
    """weight * x / sqrt(mean(x^2, -1) + eps); eps a (1,) float32 tensor."""
    return _RMS_NORM(x, weight, eps)


def layer(h, cos, sin, positions, cache_rows, lora_idx, input_norm, attn, post_norm, mlp):
    """h + attention + SwiGLU MLP of one layer for h (R, T, d); cos, sin (R, T, D); positions
    (R, T); cache_rows (R,) the cache row of each row.

    Writes the tokens' k, v into the layer's KVCache Parameters in place, at their positions,
    before attending over them (token t of a row sees the keys at positions <= its own).
    """
    return _LAYER(h, input_norm.weight, input_norm.eps_t, attn.q_proj.weight, attn.k_proj.weight,
                  attn.v_proj.weight, *attn.q_proj.lora_pair(), *attn.k_proj.lora_pair(), *attn.v_proj.lora_pair(),
                  cos, sin, attn.cache.k_cache, attn.cache.v_cache, positions.astype(ms.int32),
                  cache_rows.astype(ms.int32), attn.cache.length_t, attn.o_proj.weight,
                  *attn.o_proj.lora_pair(), post_norm.weight, post_norm.eps_t, mlp.gate_proj.weight,
                  *mlp.gate_proj.lora_pair(), mlp.up_proj.weight, *mlp.up_proj.lora_pair(), mlp.down_proj.weight,
                  *mlp.down_proj.lora_pair(), lora_idx)
