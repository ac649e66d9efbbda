"""Chat-formatted training examples, packed into static-shape batches."""
import random

import numpy as np

from cold_ms.formats.chat import chat_prompt_ids

SEQ_BUCKET, ANSWER_BUCKET = 64, 32  # sequence and answer lengths round up to these


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


def batch_shape(encoded):
    """(T, A) that fits every example: one shape for the whole run, so one compiled graph
    (each further shape costs a compile and, on the CPU backend, its own memory)."""
    return (_round_up(max(len(ids) for ids, _ in encoded), SEQ_BUCKET),
            _round_up(max(n for _, n in encoded), ANSWER_BUCKET))


def make_batch(encoded, rows, shape):
    """tokens (rows, T), pick (rows*A,), labels (rows*A,) for [(ids, answer_len), ...];
    missing rows (the last batch of an epoch) are padding with no labels."""
    seq, width = shape
    tokens = np.zeros((rows, seq), np.int32)
    pick = np.zeros((rows, width), np.int32)
    labels = np.full((rows, width), -100, np.int32)
    for b, (ids, n) in enumerate(encoded):
        tokens[b, :len(ids)] = ids
        start = len(ids) - n  # position start-1 predicts the first answer token
        pick[b, :n] = b * seq + np.arange(start - 1, len(ids) - 1)
        labels[b, :n] = ids[start:]
    return tokens, pick.reshape(-1), labels.reshape(-1)


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
