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
