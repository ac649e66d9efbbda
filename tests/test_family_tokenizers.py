"""Tokenizers and stop sets of the model families: EOS sets from config/generation_config/GGUF and
the family's end-of-turn tokens, Qwen2's digit-by-digit pre-tokenizer, Gemma's turn template."""
import json

import pytest

import fixtures
import gguf_fixtures
from cold_ms.formats.chat import BUILTIN, render_chat
from cold_ms.formats.model import load_model
from family_fixtures import FAMILIES, hf_weights

QWEN_SPECIALS = ("<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "<|endoftext|>")


def test_hf_eos_set_joins_config_generation_config_and_the_familys_stop_tokens(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    cfg = FAMILIES["qwen2"][1]
    fixtures.write_model(str(tmp_path), cfg=cfg, weights=hf_weights(cfg))
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 5]}))
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel()
    tok.train_from_iterator(fixtures.SP_TEXT, trainers.BpeTrainer(vocab_size=200, special_tokens=list(QWEN_SPECIALS)))
    tok.save(str(tmp_path / "tokenizer.json"))
    model = load_model(str(tmp_path))
    # config's 2, generation_config's 5, then <|im_end|> (4) and <|endoftext|> (5, already in)
    assert model.config.eos_token_ids == (2, 5, 4)
    assert [model.tokenizer.token(i) for i in (4, 5)] == ["<|im_end|>", "<|endoftext|>"]


def test_gguf_eos_set_joins_eos_eot_and_the_familys_stop_tokens(tmp_path):
    arch, cfg = FAMILIES["qwen2"]
    vocab, _ = gguf_fixtures.bpe_vocab(fixtures.SP_TEXT, specials=QWEN_SPECIALS)
    vocab.update(eos=4, eot=2)  # as Qwen's instruct GGUFs: EOS <|im_end|>
    gguf_fixtures.write_family_gguf(str(tmp_path / "q.gguf"), cfg, hf_weights(cfg), vocab, arch)
    model = load_model(str(tmp_path / "q.gguf"))
    assert model.config.eos_token_ids == (4, 2, 5)  # EOS, end of turn, then <|endoftext|>
    assert model.tokenizer.encode("<|im_start|>user", add_bos=False)[0] == 3  # control tokens match whole


def test_a_family_without_stop_tokens_keeps_its_eos(tmp_path):
    arch, cfg = FAMILIES["llama3.1"]
    vocab, _ = gguf_fixtures.bpe_vocab(fixtures.SP_TEXT, specials=QWEN_SPECIALS)
    gguf_fixtures.write_family_gguf(str(tmp_path / "l.gguf"), cfg, hf_weights(cfg), vocab, arch)
    assert load_model(str(tmp_path / "l.gguf")).config.eos_token_ids == (2,)


NUMBERS = ["In 2024 there were 12345 apples and 678 pears.", "1999 2000 2001 2024 31415 27182"] * 20


@pytest.mark.parametrize("pre,single_digits", [("qwen2", True), ("llama-bpe", False)])
def test_qwen2_pre_tokenizer_splits_every_digit(tmp_path, pre, single_digits):
    """Qwen2's regex takes digits one at a time (\\p{N}); Llama 3's groups up to three."""
    arch, cfg = FAMILIES["qwen2"]
    vocab, trained = gguf_fixtures.bpe_vocab(NUMBERS + fixtures.SP_TEXT)
    assert any(t.isdigit() and len(t) > 1 for t in vocab["tokens"])  # the vocabulary has multi-digit tokens
    vocab["pre"] = pre
    gguf_fixtures.write_family_gguf(str(tmp_path / "q.gguf"), cfg, hf_weights(cfg), vocab, arch)
    tok = load_model(str(tmp_path / "q.gguf")).tokenizer
    text = "In 2024 there were 12345 apples"
    ids = tok.encode(text, add_bos=False)
    digits = [tok.decode([i]) for i in ids if tok.decode([i]).strip().isdigit()]
    assert tok.decode(ids) == text
    if single_digits:
        assert digits == list("2024") + list("12345")
    else:
        assert max(len(d) for d in digits) > 1 and all(len(d) <= 3 for d in digits)


def test_gemma_turn_template():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": " Hi "},
                {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Capital of France?"}]
    assert render_chat(BUILTIN["gemma"], messages, bos_token="<bos>") == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello<end_of_turn>\n"
        "<start_of_turn>user\nCapital of France?<end_of_turn>\n<start_of_turn>model\n")


def _tiny_spm_vocab():
    """A Gemma-like sentencepiece vocabulary: byte fallback, whitespace-run pieces, no space prefix."""
    pieces = {"▁": -1.0, "▁▁": -2.0, "▁▁▁▁": -3.0, "a": -1.0, "b": -1.0, "▁a": -4.0, "ab": -5.0, "▁ab": -6.0,
              "▁b": -7.0}
    tokens = ["<unk>", "<s>", "</s>", "<start_of_turn>", "\n"] + [f"<0x{b:02X}>" for b in range(256)] + list(pieces)
    types = [2, 3, 3, 3, 4] + [6] * 256 + [1] * len(pieces)
    scores = [0.0] * (5 + 256) + list(pieces.values())
    return {"model": "llama", "tokens": tokens, "types": types, "scores": scores, "bos": 1, "eos": 2, "unk": 0,
            "add_bos": True, "add_space_prefix": False}


def test_gguf_sentencepiece_encodes_as_llama_cpp(tmp_path):
    """Merges run over the whole text between special pieces (a run of spaces is one piece), as in
    llama.cpp, not word by word as in sentencepiece."""
    from spm_reference import llama_cpp_spm
    arch, cfg = FAMILIES["gemma3"]
    vocab = _tiny_spm_vocab()
    gguf_fixtures.write_family_gguf(str(tmp_path / "s.gguf"), cfg, hf_weights(cfg), vocab, arch)
    tok = load_model(str(tmp_path / "s.gguf")).tokenizer
    ids = {t: i for i, t in enumerate(vocab["tokens"])}
    # by hand: ▁▁ (-2) merges before ▁a (-4) and ab (-5); then ▁▁a is no piece, ab is
    assert tok.encode("  ab", add_bos=False) == [ids["▁▁"], ids["ab"]]
    # "\n" is user-defined: split out; c is no piece: its byte
    assert tok.encode("a\nb c", add_bos=False) == [ids["a"], ids["\n"], ids["b"], ids["▁"], ids["<0x63>"]]
    for text in ("  ab", "a\nb c", "<start_of_turn>ab  ab\n\n    b", "é ab   a", "abab ▁ b"):
        want = llama_cpp_spm(text, vocab["tokens"], vocab["scores"], vocab["types"])
        assert tok.encode(text) == [1] + want, text
        if "▁" not in text:  # a ▁ written in the text decodes as the space it stands for
            assert tok.decode(tok.encode(text)) == text.replace("<start_of_turn>", "")


def test_sentencepiece_vocab_then_mindspore_in_one_process(tmp_path):
    """Rebuilding a GGUF's sentencepiece vocabulary before mindspore is imported leaves mindspore
    importable (the protobuf runtime's C backend, once loaded, broke mindspore's *_pb2 modules)."""
    import os
    import subprocess
    import sys
    arch, cfg = FAMILIES["gemma3"]
    path = str(tmp_path / "s.gguf")
    gguf_fixtures.write_family_gguf(path, cfg, hf_weights(cfg), _tiny_spm_vocab(), arch)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import sys; from cold_ms.formats.model import load_model; "
            f"print(load_model({path!r}).tokenizer.encode('  ab')); import mindspore; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.split("\n")[1] == "ok", done.stderr[-2000:]
