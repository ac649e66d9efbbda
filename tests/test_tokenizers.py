"""Tokenizers of each kind: round trips, ids against the reference libraries, chat templates."""
import json

import pytest

import fixtures
from cold_ms.errors import ConfigError
from cold_ms.formats.chat import BUILTIN, chat_prompt_ids, render_chat
from cold_ms.formats.tokenizer import HFTokenizer, SentencePieceTokenizer, load_tokenizer

TEXTS = ["The quick brown fox.", "What is the capital of France? Paris.", "  two  spaces", "1234 5"]


def test_sentencepiece_ids_roundtrip_and_control_tokens(tiny):
    import sentencepiece as spm
    path = tiny["model_dir"] + "/tokenizer.model"
    ref = spm.SentencePieceProcessor(model_file=path)
    tok = SentencePieceTokenizer(path)
    for text in TEXTS:
        assert tok.encode(text) == [1] + ref.encode(text)
        assert tok.encode(text, add_bos=False) == ref.encode(text)
        assert tok.decode(tok.encode(text)) == ref.decode(ref.encode(text))
    # <s> and </s> written in a (chat) text are the control tokens, as in HF's LLaMA tokenizer
    assert tok.encode("<s>Paris</s>", add_bos=False) == [1] + ref.encode("Paris") + [2]
    assert tok.eos_ids == (2,) and tok.bos_id == 1


def test_hf_tokenizer_json(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(fixtures.SP_TEXT, trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>", "<s>", "</s>"]))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": {"content": "</s>"}, "chat_template": BUILTIN["chatml"]}))
    ours = load_tokenizer(str(tmp_path))
    assert isinstance(ours, HFTokenizer)
    for text in TEXTS:
        assert ours.encode(text) == tok.encode(text).ids and ours.encode(text)[0] == 1
        assert ours.encode(text, add_bos=False) == tok.encode(text, add_special_tokens=False).ids
    assert ours.eos_ids == (2,) and ours.bos_id == 1 and ours.chat_template == BUILTIN["chatml"]


def test_chatml_template():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
    assert render_chat(BUILTIN["chatml"], messages) == \
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n"


def test_llama2_template():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
                {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye?"}]
    assert render_chat(BUILTIN["llama2"], messages, "<s>", "</s>") == \
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi? [/INST] Hello. </s><s>[INST] Bye? [/INST]"


def test_chat_prompt_ids_use_the_template_bos_once(tiny):
    tok = SentencePieceTokenizer(tiny["model_dir"] + "/tokenizer.model")
    ids = chat_prompt_ids(tok, [{"role": "user", "content": "Paris?"}], "llama2")
    assert ids[0] == 1 and ids.count(1) == 1
    assert ids == tok.encode("<s>[INST] Paris? [/INST]", add_bos=False)
    with pytest.raises(ConfigError, match="no chat template"):
        chat_prompt_ids(tok, [{"role": "user", "content": "x"}])
    with pytest.raises(ConfigError, match="unknown chat template 'vicuna'"):
        chat_prompt_ids(tok, [{"role": "user", "content": "x"}], "vicuna")


def test_a_tokenizer_config_that_is_not_an_object_is_refused(tmp_path):
    import pytest
    from cold_ms.errors import CheckpointError
    from cold_ms.formats.tokenizer import load_tokenizer
    (tmp_path / "tokenizer_config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="tokenizer_config.json: expected a JSON object"):
        load_tokenizer(str(tmp_path))
