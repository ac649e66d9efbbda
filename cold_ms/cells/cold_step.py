"""The compiled decoding steps: one forward over all rows, scoring inside, token ids out."""
import mindspore as ms
from mindspore import nn, ops

from cold_ms.ops import decode
from cold_ms.ops import contrastive
from cold_ms.ops.contrastive import MASKS, cold_select
from cold_ms.ops.registry import cpu_kernels


def one_shape(cell, mode):
    """`cell`, set to run its compiled graph directly from the second call on (graph mode).

    For a step Cell that sees a single input shape, e.g. decode steps: MindSpore's
    "increment" phase skips the per-call compile check, which walks every sub-cell to set
    its compile phase (3.7 ms of a 20 ms SmolLM2-135M step). It does not look at the
    inputs again, so a cell set this way must never be called with another shape.
    """
    if mode == "graph":
        cell.phase = "increment"
    return cell


class ColdStep(nn.Cell):
    """Token rows through the model, the picked tokens scored, next ids (K,) out.

    tokens, positions (R, T) and cache_rows, lora_idx (R,): every row writes its tokens into its
    own cache row at its own positions (rows of one request may be many, e.g. the tokens of a
    prompt chunk as R rows of T = 1, and may share a cache row). pick (2K,) int32: the tokens to
    score as flat indices into the R*T tokens, [expert tokens of the K choices | their amateur
    tokens] (a choice without an amateur names its expert token twice, with beta 0: plain
    greedy), or (K,) expert tokens alone on an engine without amateurs.
    alpha, beta (K,) and extra (K, 4) (ops/contrastive.py: EXTRA: the beta schedule,
    temperature, top_p and the draw's u) are float32 Tensors, so new values never recompile;
    a graph is compiled per (R, T, K).
    """

    def __init__(self, lm, mask="logit"):
        super().__init__()
        if mask not in MASKS:
            raise ValueError(f"mask must be one of {MASKS}, got {mask!r}")
        self.lm, self.mask = lm, mask
        self.kernel = cpu_kernels(lm.backend)

    def construct(self, tokens, positions, cache_rows, pick, lora_idx, alpha, beta, extra):
        return choose(self.lm.score(tokens, positions, cache_rows, pick, lora_idx), alpha, beta, extra, self.mask,
                      self.kernel)


class TwoModelStep(nn.Cell):
    """ColdStep with a separate amateur model (the paper's §5.1: another model as amateur): the
    rows are two halves of R/2, the first through the expert's model, the second through the
    amateur's (its cache rows numbered from 0 again); pick (2K,) [expert picks into the first
    half | amateur picks into the second half, counted from its start], scored together, in one
    graph. The two models share the tokenizer; the amateur runs no adapter."""

    def __init__(self, lm, amateur, mask="logit"):
        super().__init__()
        if mask not in MASKS:
            raise ValueError(f"mask must be one of {MASKS}, got {mask!r}")
        self.lm, self.amateur, self.mask = lm, amateur, mask
        self.kernel = cpu_kernels(lm.backend)

    def construct(self, tokens, positions, cache_rows, pick, lora_idx, alpha, beta, extra):
        rows, k = tokens.shape[0], pick.shape[0] // 2
        first = ops.arange(0, rows // 2, dtype=ms.int32)
        second = ops.arange(rows // 2, rows, dtype=ms.int32)
        e_pick = ops.gather(pick, ops.arange(0, k, dtype=ms.int32), 0)
        a_pick = ops.gather(pick, ops.arange(k, 2 * k, dtype=ms.int32), 0)
        expert = self.lm.score(ops.gather(tokens, first, 0), ops.gather(positions, first, 0),
                               ops.gather(cache_rows, first, 0), e_pick, ops.gather(lora_idx, first, 0))
        amateur = self.amateur.score(ops.gather(tokens, second, 0), ops.gather(positions, second, 0),
                                     ops.gather(cache_rows, second, 0), a_pick,
                                     ops.full((rows // 2,), -1, dtype=ms.int32))
        return choose(ops.concat((expert, amateur), 0), alpha, beta, extra, self.mask, self.kernel)


def choose(logits, alpha, beta, extra, mask, kernel):
    """Next ids (K,) of [experts | amateurs] logits (2K, V), or experts alone (K, V)."""
    if kernel:
        return decode.cold_select(logits, alpha, beta, mask, extra)
    slots = alpha.shape[0]
    if logits.shape[0] == slots:
        return contrastive.choose(logits, logits, alpha, beta, extra, mask)
    # Gather, not slicing: the CPU StridedSlice took ~0.9 ms per (rows, 49152) slice here
    expert = ops.gather(logits, ops.arange(0, slots, dtype=ms.int32), 0)
    amateur = ops.gather(logits, ops.arange(slots, 2 * slots, dtype=ms.int32), 0)
    return contrastive.choose(expert, amateur, alpha, beta, extra, mask)


class LogitsStep(nn.Cell):
    """The forward alone, logits out: the building block of the unfused CD baselines."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def construct(self, tokens, positions, cache_rows, last, lora_idx):
        return self.lm(tokens, positions, cache_rows, last, lora_idx)


class ScoreStep(nn.Cell):
    """Contrastive scoring of logits computed elsewhere (a separate graph call)."""

    def __init__(self, mask="logit"):
        super().__init__()
        self.mask = mask

    def construct(self, expert, amateur, alpha, beta):
        return cold_select(expert, amateur, alpha, beta, self.mask)
