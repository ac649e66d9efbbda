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
# Per-slot knobs beyond alpha and beta, the columns of `extra` (S, 4) float32:
#   schedule     0: beta as given; 1: beta * H(p_a) / (H(p_e) + H(p_a)) at every step (after
#                ACD, Kim et al. 2024: the contrast weighs more where the expert is surer
#                than the amateur)
#   temperature  0: argmax; > 0: draw from softmax(score / T) over the plausible set
#   top_p        the nucleus of that draw (1: every plausible token)
#   uniform      the draw's u in [0, 1): drawn on the host from the request's seed and step
EXTRA = ("schedule", "temperature", "top_p", "uniform")
SCHEDULES = {"fixed": 0, "entropy": 1}


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


def entropy(logits):
    """Entropy in nats of each row's softmax. (N, V) -> (N,)."""
    logp = ops.log_softmax(logits, axis=-1)
    return -(ops.exp(logp) * logp).sum(axis=-1)


def scheduled_beta(expert, amateur, beta, schedule):
    """beta, or under schedule 1 beta * H(p_a) / (H(p_e) + H(p_a)) (0.5 when both are 0).
    The two softmaxes over the vocabulary run only in a step where some row asks for them."""
    if not (schedule == 1).any():
        return beta
    he, ha = entropy(expert), entropy(amateur)
    total = he + ha
    weight = ops.select(total > 0, ha / ops.maximum(total, 1e-30), ops.full_like(total, 0.5))
    return ops.select(schedule == 1, beta * weight, beta)


def draw(scores, temperature, top_p, uniform):
    """A draw per row from softmax(scores / T), cut to the top-p nucleus, at u. (N, V) -> (N,)."""
    hot = ops.maximum(temperature, 1e-6).reshape(-1, 1)
    q = ops.exp((scores - scores.max(axis=-1, keepdims=True)) / hot)  # -inf scores give 0
    q_sorted, order = ops.sort(q, axis=-1, descending=True)
    cum = ops.cumsum(q_sorted, axis=-1)
    mass = cum[:, -1:]
    first = ops.arange(0, q.shape[-1], dtype=ms.int32).reshape(1, -1) == 0
    kept = q_sorted * ops.logical_or(cum - q_sorted < top_p.reshape(-1, 1) * mass, first).astype(q.dtype)
    acc = ops.cumsum(kept, axis=-1)
    pick = first_argmax((acc > uniform.reshape(-1, 1) * acc[:, -1:]).astype(ms.float32))
    return ops.gather_elements(order, 1, pick.reshape(-1, 1)).reshape(-1).astype(ms.int32)


def choose(expert, amateur, alpha, beta, extra, mask="logit"):
    """Next ids (N,) int32 with the per-slot knobs of `extra` (N, 4), see EXTRA: the MindSpore
    formulation of the select kernel (custom_ops/cpu/select.cc).

    Greedy and CoLD need the masked argmax alone: max, compare and min over the vocabulary.
    The draw's sort of the whole vocabulary (V log V, on 152k-262k entries for Qwen and
    Gemma) runs only in a step where some row samples, as a branch on a tensor, so one graph
    serves both and the tokens are those of the draw that sorts every step. (A row sampling with
    top_p = 1 still sorts: the select kernel's draw walks the sorted order, and the tokens must
    stay the same.) Measured on the CPU (gather backend, random 100m, V = 32000, 2 CoLD slots,
    greedy): 54.9-55.7 ms a step against 56.3-57.5 ms sorting every step, three runs each."""
    temperature = extra[:, 1]
    b = scheduled_beta(expert, amateur, beta, extra[:, 0])
    scores = cold_scores(expert, amateur, alpha, b, mask)
    greedy = first_argmax(scores)
    if (temperature > 0).any():
        return ops.select(temperature > 0, draw(scores, temperature, extra[:, 2], extra[:, 3]), greedy)
    return greedy
