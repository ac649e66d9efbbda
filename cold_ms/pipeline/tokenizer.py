"""Tokenizers behind one small interface: encode(text) -> ids, decode(ids) -> text."""
import json
import os

from cold_ms.errors import CheckpointError


class Tokenizer:
    """Common interface. `eos_ids` end generation; `bos_id` is prepended when add_bos."""
    bos_id = None
    eos_ids = ()
    add_bos = True
    vocab_size = 0
    chat_template = None

    def encode(self, text, add_bos=None):
        ids = self._encode(text)
        if (self.add_bos if add_bos is None else add_bos) and self.bos_id is not None:
            ids = [self.bos_id] + ids
        return ids

    def _encode(self, text):
        raise NotImplementedError

    def decode(self, ids):
        raise NotImplementedError


class SentencePieceTokenizer(Tokenizer):
    """A sentencepiece `.model` file (LLaMA / Mistral family)."""

    def __init__(self, path, add_bos=True):
        import sentencepiece as spm
        if not os.path.isfile(path):
            raise CheckpointError(f"tokenizer file not found: {path}")
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.Load(path)
        except (OSError, RuntimeError) as e:
            raise CheckpointError(f"{path}: not a valid sentencepiece model ({e})") from None
        self.vocab_size = self.sp.GetPieceSize()
        self.bos_id = self.sp.bos_id() if self.sp.bos_id() >= 0 else None
        self.eos_ids = (self.sp.eos_id(),) if self.sp.eos_id() >= 0 else ()
        self.add_bos = add_bos

    def _encode(self, text):
        return list(self.sp.EncodeAsIds(text))

    def decode(self, ids):
        return self.sp.DecodeIds([int(i) for i in ids if 0 <= int(i) < self.vocab_size])


def _tokenizer_flags(model_dir):
    path = os.path.join(model_dir, "tokenizer_config.json")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_tokenizer(model_dir):
    """The tokenizer in a model directory, or None when it ships none (ids-only use)."""
    flags = _tokenizer_flags(model_dir)
    sp_path = os.path.join(model_dir, "tokenizer.model")
    if os.path.isfile(sp_path):
        tok = SentencePieceTokenizer(sp_path, add_bos=flags.get("add_bos_token", True))
        tok.chat_template = flags.get("chat_template")
        return tok
    return None
