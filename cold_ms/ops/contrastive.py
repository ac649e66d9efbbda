"""Contrastive scoring: pure functions of two logit tensors (usable inside a compiled graph).

For one slot with expert logits s_e and amateur logits s_a (both (V,)):

    V_alpha = { v : s_e[v] >= log(alpha) + max s_e }            # mask="logit"
            = { v : p_e[v] >= alpha * max p_e }                  # mask="prob" (p = softmax)
    s       = (1 + beta) * s_e - beta * s_a   on V_alpha, -inf elsewhere
    next    = argmax s, lowest index on ties

The two masks are the same set in exact arithmetic; "prob" follows the probability-space
wording of contrastive decoding and may differ only in the last float bit. With beta = 0,
s = s_e exactly and every maximiser of s_e is in V_alpha, so the result is plain greedy.
"""
import mindspore as ms
from mindspore import ops

MASKS = ("logit", "prob")


def first_argmax(scores):
    """Index of the maximum along the last axis, the lowest one on ties. (N, V) -> (N,) int32."""
    vocab = scores.shape[-1]
    iota = ops.arange(0, vocab, dtype=ms.int32).reshape(1, vocab)
    top = scores.max(axis=-1, keepdims=True)
    candidates = ops.where(scores == top, iota, vocab)
    return candidates.min(axis=-1).astype(ms.int32)


def plausibility_mask(expert, alpha, mask="logit"):
    """Boolean (N, V): tokens the expert finds at least alpha times as likely as its best."""
    if mask == "logit":
        return expert >= ops.log(alpha).reshape(-1, 1) + expert.max(axis=-1, keepdims=True)
    probs = ops.softmax(expert, axis=-1)
    return probs >= alpha.reshape(-1, 1) * probs.max(axis=-1, keepdims=True)


def cold_scores(expert, amateur, alpha, beta, mask="logit"):
    """(1+beta)*s_e - beta*s_a on the plausibility set, -inf elsewhere. (N, V) each; alpha, beta (N,)."""
    b = beta.reshape(-1, 1)
    scores = (1.0 + b) * expert - b * amateur
    return ops.masked_fill(scores, ops.logical_not(plausibility_mask(expert, alpha, mask)),
                           float("-inf"))


def cold_select(expert, amateur, alpha, beta, mask="logit"):
    """Next token ids (N,) int32 of contrastive decoding; see the module docstring."""
    return first_argmax(cold_scores(expert, amateur, alpha, beta, mask))
