"""The compiled decoding steps: one forward over all rows, scoring inside, token ids out."""
import mindspore as ms
from mindspore import nn, ops

from cold_ms.ops import decode
from cold_ms.ops.contrastive import MASKS, cold_select, first_argmax
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
    """rows = [expert rows of the slots | amateur rows of the same slots] -> next ids (S,).

    Compiled once per input shape: decode is (2S, 1) over every cache row in order
    (cache_rows None); prefill is (R, T) chunks written into the listed cache rows.
    alpha, beta (S,) float32 Tensors so new values never recompile.
    """

    def __init__(self, lm, mask="logit"):
        super().__init__()
        if mask not in MASKS:
            raise ValueError(f"mask must be one of {MASKS}, got {mask!r}")
        self.lm, self.mask = lm, mask
        self.kernel = cpu_kernels(lm.backend)

    def construct(self, tokens, positions, cache_rows, last, lora_idx, alpha, beta):
        logits = self.lm(tokens, positions, cache_rows, last, lora_idx)
        if self.kernel:
            return decode.cold_select(logits, alpha, beta, self.mask)
        slots = logits.shape[0] // 2
        # Gather, not slicing: the CPU StridedSlice took ~0.9 ms per (rows, 49152) slice here
        expert = ops.gather(logits, ops.arange(0, slots, dtype=ms.int32), 0)
        amateur = ops.gather(logits, ops.arange(slots, 2 * slots, dtype=ms.int32), 0)
        return cold_select(expert, amateur, alpha, beta, self.mask)


class GreedyStep(nn.Cell):
    """rows = one row per slot (no amateur) -> argmax ids (S,), lowest index on ties."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm
        self.kernel = cpu_kernels(lm.backend)

    def construct(self, tokens, positions, cache_rows, last, lora_idx):
        logits = self.lm(tokens, positions, cache_rows, last, lora_idx)
        return decode.first_argmax(logits) if self.kernel else first_argmax(logits)


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
