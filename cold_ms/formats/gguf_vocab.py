"""The vocabulary embedded in a GGUF file, rebuilt as a real tokenizer.

- tokenizer.ggml.model == "gpt2": byte-level BPE from tokens + merges (`tokenizers`), with
  the pre-tokenizer that `tokenizer.ggml.pre` names.
- tokenizer.ggml.model == "llama": a sentencepiece BPE model rebuilt from tokens, scores
  and token types, i.e. the `tokenizer.model` the file was converted from.
"""
import heapq

from cold_ms.errors import CheckpointError, ConfigError
from cold_ms.formats.spm_proto import BPE, model_proto
from cold_ms.formats.tokenizer import HFTokenizer, SentencePieceTokenizer

UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 2, 3, 4, 5, 6  # llama.cpp's token types
# llama.cpp pre-tokenizer names that split digits one by one before GPT-2's byte-level regex
_DIGIT_SPLIT = ("smollm", "starcoder", "refact")
_BYTE_LEVEL = _DIGIT_SPLIT + ("gpt2", "gpt-2", "default")
# The regexes of the pre-tokenizers llama.cpp names (its llama-vocab.cpp): Llama 3 groups digits
# by up to three, Qwen2 (and Qwen3, which its converter also calls qwen2) splits every digit
_SPLITS = {name: (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|" + digits +
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
           for names, digits in ((("llama-bpe", "llama3"), r"\p{N}{1,3}"), (("qwen2",), r"\p{N}"))
           for name in names}


def _field(reader, key, default=None):
    f = reader.fields.get(f"tokenizer.ggml.{key}")
    return default if f is None else f.contents()


def _pre_tokenizer(pre, path):
    from tokenizers import Regex, pre_tokenizers as pt
    if pre in _BYTE_LEVEL:
        byte_level = pt.ByteLevel(add_prefix_space=False, use_regex=True)
        return pt.Sequence([pt.Digits(individual_digits=True), byte_level]) if pre in _DIGIT_SPLIT else byte_level
    if pre in _SPLITS:
        return pt.Sequence([pt.Split(Regex(_SPLITS[pre]), behavior="isolated"),
                            pt.ByteLevel(add_prefix_space=False, use_regex=False)])
    raise ConfigError(f"{path}: GGUF pre-tokenizer '{pre}' is not supported yet "
                      f"(supported: {', '.join(_BYTE_LEVEL + tuple(_SPLITS))})")


def _bpe(reader, tokens, types, path):
    from tokenizers import Tokenizer, decoders, processors
    from tokenizers.models import BPE
    merges = [tuple(m.split(" ", 1)) for m in _field(reader, "merges", [])]
    tok = Tokenizer(BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges,
                        fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = _pre_tokenizer(_field(reader, "pre", "default"), path)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([t for t, k in zip(tokens, types) if k == CONTROL])
    tok.add_tokens([t for t, k in zip(tokens, types) if k == USER_DEFINED])  # matched whole in any text
    bos, add_bos = _field(reader, "bos_token_id"), bool(_field(reader, "add_bos_token", False))
    if add_bos and bos is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{tokens[bos]} $A", special_tokens=[(tokens[bos], bos)])
    eos = _field(reader, "eos_token_id")
    return HFTokenizer(tok, bos, () if eos is None else (eos,), add_bos=add_bos)


def _sentencepiece(reader, tokens, types, path):
    scores = _field(reader, "scores") or [0.0] * len(tokens)
    trainer = {"model_type": BPE, "byte_fallback": BYTE in types}
    for key, name in (("unknown_token_id", "unk"), ("bos_token_id", "bos"), ("eos_token_id", "eos"),
                      ("padding_token_id", "pad")):
        index = _field(reader, key)
        trainer[name + "_id"] = -1 if index is None else index
        if index is not None:  # sentencepiece finds them by text (<s> unless told: Gemma's is <bos>)
            trainer[name + "_piece"] = tokens[index]
    space_prefix = bool(_field(reader, "add_space_prefix", True))
    normalizer = {"name": "identity", "add_dummy_prefix": space_prefix, "remove_extra_whitespaces": False,
                  "escape_whitespaces": True}
    unk = _field(reader, "unknown_token_id")
    # GGUF's token types are sentencepiece's (NORMAL 1 ... BYTE 6), but Gemma's types <unk> CONTROL
    pieces = ((t, float(s), UNKNOWN if i == unk else k if 1 <= k <= BYTE else 1)
              for i, (t, s, k) in enumerate(zip(tokens, scores, types)))
    whole = {t: i for i, (t, k) in enumerate(zip(tokens, types)) if k in (CONTROL, USER_DEFINED)}
    return LlamaCppSentencePiece(tokens, scores, space_prefix, model_proto=model_proto(pieces, trainer, normalizer),
                                 whole=whole, add_bos=bool(_field(reader, "add_bos_token", True)), source=path)


class LlamaCppSentencePiece(SentencePieceTokenizer):
    """A GGUF's sentencepiece vocabulary encoded as llama.cpp encodes it (its llm_tokenizer_spm):
    control and user-defined pieces split out first, then, over the whole remaining text, the
    adjacent pair whose joined text is a piece of the highest score merged (leftmost on ties)
    until none is; what stays outside the vocabulary falls back to <0xXX> bytes. sentencepiece
    itself turns spaces into ▁ before it looks for user-defined pieces, so Gemma's (runs of 2-31
    spaces, code indents) never matched, and it merges word by word. Decoding is sentencepiece's."""

    def __init__(self, tokens, scores, space_prefix, **kwargs):
        super().__init__(**kwargs)
        self._ids = {t: i for i, t in enumerate(tokens)}
        self._scores = scores
        self._prefix = " " if space_prefix else ""  # llama.cpp: before each text after a special token

    def _encode_text(self, text):
        syms = list((self._prefix + text).replace(" ", "▁"))
        n = len(syms)
        nxt, prv, heap = list(range(1, n + 1)), list(range(-1, n - 1)), []

        def pair(i, j):
            if i >= 0 and j < n:
                index = self._ids.get(syms[i] + syms[j])
                if index is not None:
                    heapq.heappush(heap, (-self._scores[index], i, syms[i] + syms[j]))

        for i in range(n - 1):
            pair(i, i + 1)
        while heap:
            _, i, joined = heapq.heappop(heap)
            j = nxt[i]
            if syms[i] is None or j >= n or syms[i] + syms[j] != joined:
                continue  # a pair one of whose halves has merged since
            syms[i], syms[j], nxt[i] = joined, None, nxt[j]
            if nxt[j] < n:
                prv[nxt[j]] = i
            pair(prv[i], i)
            pair(i, nxt[i])
        ids = []
        for sym in filter(None, syms):
            index = self._ids.get(sym)
            ids.extend([index] if index is not None else
                       [self._ids.get(f"<0x{b:02X}>", self.sp.unk_id()) for b in sym.encode("utf-8")])
        return ids


def gguf_tokenizer(reader, path):
    """The tokenizer of a GGUF file, or None if it carries no vocabulary."""
    tokens = _field(reader, "tokens")
    if not tokens:
        return None
    types = _field(reader, "token_type") or [1] * len(tokens)
    kind = _field(reader, "model")
    if kind == "gpt2":
        tok = _bpe(reader, tokens, types, path)
    elif kind == "llama":
        tok = _sentencepiece(reader, tokens, types, path)
    else:
        raise ConfigError(f"{path}: GGUF tokenizer model '{kind}' is not supported yet (gpt2, llama)")
    if tok.vocab_size != len(tokens):
        raise CheckpointError(f"{path}: the rebuilt tokenizer has {tok.vocab_size} tokens, the file {len(tokens)}")
    tok.chat_template = reader.fields["tokenizer.chat_template"].contents() \
        if "tokenizer.chat_template" in reader.fields else None
    return tok
