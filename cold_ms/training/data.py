"""Chat-formatted training examples, packed into static-shape batches."""
import random

import numpy as np

from cold_ms.formats.chat import chat_prompt_ids

SEQ_BUCKET, ANSWER_BUCKET = 64, 32  # sequence lengths and answer tokens a batch round up to these


def encode_example(tokenizer, question, target, template=None):
    """(ids, number of answer tokens): the chat prompt followed by the assistant reply."""
    prompt = chat_prompt_ids(tokenizer, [{"role": "user", "content": question}], template)
    full = chat_prompt_ids(tokenizer, [{"role": "user", "content": question},
                                       {"role": "assistant", "content": target}], template,
                           add_generation_prompt=False)
    if full[:len(prompt)] != prompt:
        raise ValueError("the chat template does not extend the prompt with the reply")
    return full, len(full) - len(prompt)


def _round_up(n, step):
    return -(-n // step) * step


def batch_shape(encoded, batches):
    """(T, N) that fits every batch of `batches` (lists of indices into encoded): T tokens a row,
    N answer tokens a batch. One shape for the whole run, so one compiled graph (each further
    shape costs a compile and, on the CPU backend, its own memory). The answer tokens of a batch
    are packed into N, not given a width per row: the LM head and the loss run on N positions,
    about the batch's real labels, rather than rows x the longest answer."""
    return (_round_up(max(len(ids) for ids, _ in encoded), SEQ_BUCKET),
            _round_up(max(sum(encoded[i][1] for i in b) for b in batches), ANSWER_BUCKET))


def make_batch(encoded, rows, shape):
    """tokens (rows, T), pick (N,), labels (N,) for [(ids, answer_len), ...]: pick holds flat
    indices into rows*T of the positions that predict the answer tokens, row after row, and
    labels those tokens; the rest of pick and labels is padding (position 0, label -100), as are
    missing rows (the last batch of an epoch)."""
    seq, width = shape
    tokens = np.zeros((rows, seq), np.int32)
    pick = np.zeros(width, np.int32)
    labels = np.full(width, -100, np.int32)
    used = 0
    for b, (ids, n) in enumerate(encoded):
        tokens[b, :len(ids)] = ids
        start = len(ids) - n  # position start-1 predicts the first answer token
        pick[used:used + n] = b * seq + np.arange(start - 1, len(ids) - 1)
        labels[used:used + n] = ids[start:]
        used += n
    return tokens, pick, labels


def epoch_batches(encoded, batch, seed, epoch):
    """Shuffled batches; examples of similar length share a batch (less padding)."""
    order = list(range(len(encoded)))
    random.Random(seed * 1000 + epoch).shuffle(order)
    chunks = [order[i:i + batch * 16] for i in range(0, len(order), batch * 16)]
    batches = []
    for chunk in chunks:
        chunk.sort(key=lambda i: len(encoded[i][0]))
        batches += [chunk[i:i + batch] for i in range(0, len(chunk), batch)]
    random.Random(seed * 1000 + epoch + 1).shuffle(batches)
    return batches
