"""The training objective: cross-entropy of the answer tokens under base + LoRA slot 0."""
import mindspore as ms
from mindspore import nn, ops



class AnswerLoss(nn.Cell):
    """Full causal forward without the KV cache; only answer positions reach the LM head."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def construct(self, tokens, pick, labels):
        """tokens (B, T); pick (N,) flat indices into B*T of positions that predict a label;
        labels (N,) next-token ids, -100 for padding. -> mean loss over real labels."""
        rows, seq = tokens.shape[0], tokens.shape[1]
        steps = ops.arange(0, seq, dtype=ms.int32)
        positions = ops.tile(steps.reshape(1, seq), (rows, 1))
        masks = self.lm.attention_masks(steps.reshape(1, seq, 1), steps.reshape(1, 1, seq))
        lora_idx = ops.zeros((rows,), ms.int32)
        h = self.lm.hidden(tokens, positions, None, masks, None, lora_idx)
        logits = self.lm.logits(ops.gather(h.reshape(rows * seq, -1), pick, 0))
        return ops.cross_entropy(logits, labels, ignore_index=-100)


class LossAndGrads(nn.Cell):
    """(loss, gradients of the trainable Parameters) in one compiled graph; the optimizer is
    applied outside, so several micro-batches can be accumulated into one update."""

    def __init__(self, net, params):
        super().__init__()
        self.net, self.weights = net, ms.ParameterTuple(params)
        self.grad = ops.GradOperation(get_by_list=True)

    def construct(self, tokens, pick, labels):
        return self.net(tokens, pick, labels), self.grad(self.net, self.weights)(tokens, pick, labels)
