"""Tokenizers behind one small interface: encode(text) -> ids, decode(ids) -> text.

- SentencePieceTokenizer: a sentencepiece model (a LLaMA / Mistral / Gemma `tokenizer.model`,
  or one rebuilt from a GGUF vocabulary: gguf_vocab.LlamaCppSentencePiece); control tokens
  written in the text (<s>, </s>, <start_of_turn>, ...) are matched as single tokens, as HF's
  tokenizers do.
- HFTokenizer: a `tokenizers` Tokenizer (HF `tokenizer.json`, or a byte-level BPE rebuilt
  from a GGUF vocabulary with its merges).
"""
import json
import os
import re

from cold_ms.errors import CheckpointError


class Tokenizer:
    """Common interface. `eos_ids` end generation; `bos_id` starts a prompt when add_bos."""
    bos_id = None
    eos_ids = ()
    add_bos = True
    vocab_size = 0
    chat_template = None

    def encode(self, text, add_bos=None):
        raise NotImplementedError

    def decode(self, ids):
        raise NotImplementedError

    def token(self, token_id):
        """The text of one token id (special tokens included), or None."""
        raise NotImplementedError

    def token_id(self, text):
        """The id of the vocabulary entry `text` (special tokens included), or None."""
        raise NotImplementedError


class SentencePieceTokenizer(Tokenizer):
    """`whole`: {piece: id} of the pieces matched whole wherever the text holds them (default: the
    control tokens); the text between them is encoded by sentencepiece (_encode_text)."""

    def __init__(self, path=None, model_proto=None, add_bos=True, source=None, whole=None):
        import sentencepiece as spm
        source = source or path
        self.sp = spm.SentencePieceProcessor()
        try:
            if model_proto is not None:
                self.sp.LoadFromSerializedProto(model_proto)
            elif not os.path.isfile(path):
                raise CheckpointError(f"tokenizer file not found: {path}")
            else:
                self.sp.Load(path)
        except (OSError, RuntimeError) as e:
            raise CheckpointError(f"{source}: not a valid sentencepiece model ({e})") from None
        self.vocab_size = self.sp.GetPieceSize()
        self.bos_id = self.sp.bos_id() if self.sp.bos_id() >= 0 else None
        self.eos_ids = (self.sp.eos_id(),) if self.sp.eos_id() >= 0 else ()
        self.add_bos = add_bos
        if whole is None:
            whole = {self.sp.IdToPiece(i): i for i in range(self.vocab_size) if self.sp.IsControl(i)}
        self._whole = whole
        self._split = re.compile("(" + "|".join(re.escape(p) for p in sorted(whole, key=len, reverse=True))
                                 + ")") if whole else None

    def encode(self, text, add_bos=None):
        ids = [self.bos_id] if (self.add_bos if add_bos is None else add_bos) and self.bos_id is not None else []
        parts = self._split.split(text) if self._split else [text]
        for i, part in enumerate(parts):
            if i % 2:  # a control token written in the text
                ids.append(self._whole[part])
            elif part:
                ids.extend(self._encode_text(part))
        return ids

    def _encode_text(self, text):
        return self.sp.EncodeAsIds(text)

    def decode(self, ids):
        return self.sp.DecodeIds([int(i) for i in ids if 0 <= int(i) < self.vocab_size])

    def token(self, token_id):
        return self.sp.IdToPiece(int(token_id)) if 0 <= int(token_id) < self.vocab_size else None

    def token_id(self, text):
        index = self.sp.PieceToId(text)  # unk_id for a text not in the vocabulary
        return index if self.sp.IdToPiece(index) == text else None


class HFTokenizer(Tokenizer):
    def __init__(self, tok, bos_id=None, eos_ids=(), add_bos=False):
        self.tok = tok
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)
        self.bos_id, self.eos_ids, self.add_bos = bos_id, tuple(eos_ids), add_bos

    @classmethod
    def from_file(cls, path, flags):
        from tokenizers import Tokenizer as Tok
        try:
            tok = Tok.from_file(path)
        except Exception as e:  # tokenizers raises a bare Exception on bad JSON
            raise CheckpointError(f"{path}: not a valid tokenizer.json ({e})") from None

        def token_id(key):
            value = flags.get(key)
            value = value.get("content") if isinstance(value, dict) else value
            return tok.token_to_id(value) if value else None

        eos = token_id("eos_token")
        # A post-processor in tokenizer.json adds BOS itself where the model wants one.
        return cls(tok, token_id("bos_token"), () if eos is None else (eos,), add_bos=True)

    def encode(self, text, add_bos=None):
        """BOS comes from the tokenizer's post-processor, enabled by add_bos."""
        add = self.add_bos if add_bos is None else add_bos
        return self.tok.encode(text, add_special_tokens=add).ids

    def decode(self, ids):
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=True)

    def token(self, token_id):
        return self.tok.id_to_token(int(token_id))

    def token_id(self, text):
        return self.tok.token_to_id(text)


def _tokenizer_flags(model_dir):
    path = os.path.join(model_dir, "tokenizer_config.json")
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            flags = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(flags, dict):
        raise CheckpointError(f"{path}: expected a JSON object of tokenizer settings, got {type(flags).__name__}")
    return flags


def load_tokenizer(model_dir):
    """The tokenizer of a model directory (tokenizer.json preferred), or None if it has none."""
    flags = _tokenizer_flags(model_dir)
    json_path = os.path.join(model_dir, "tokenizer.json")
    sp_path = os.path.join(model_dir, "tokenizer.model")
    if os.path.isfile(json_path):
        tok = HFTokenizer.from_file(json_path, flags)
    elif os.path.isfile(sp_path):
        tok = SentencePieceTokenizer(sp_path, add_bos=flags.get("add_bos_token", True))
    else:
        return None
    tok.chat_template = flags.get("chat_template")
    return tok
