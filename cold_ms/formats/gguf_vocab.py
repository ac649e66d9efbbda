"""The vocabulary embedded in a GGUF file, rebuilt as a real tokenizer.

- tokenizer.ggml.model == "gpt2": byte-level BPE from tokens + merges (`tokenizers`), with
  the pre-tokenizer that `tokenizer.ggml.pre` names.
- tokenizer.ggml.model == "llama": a sentencepiece BPE model rebuilt from tokens, scores
  and token types, i.e. the `tokenizer.model` the file was converted from.
"""
import struct

from cold_ms.errors import CheckpointError, ConfigError
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
    from sentencepiece import sentencepiece_model_pb2 as pb
    scores = _field(reader, "scores") or [0.0] * len(tokens)
    proto = pb.ModelProto()
    proto.trainer_spec.model_type = pb.TrainerSpec.BPE
    proto.trainer_spec.byte_fallback = BYTE in types
    for key, attr in (("unknown_token_id", "unk"), ("bos_token_id", "bos"),
                      ("eos_token_id", "eos"), ("padding_token_id", "pad")):
        index = _field(reader, key)
        setattr(proto.trainer_spec, attr + "_id", -1 if index is None else index)
        if index is not None:  # sentencepiece finds them by text (<s> unless told: Gemma's is <bos>)
            setattr(proto.trainer_spec, attr + "_piece", tokens[index])
    proto.normalizer_spec.name = "identity"
    proto.normalizer_spec.add_dummy_prefix = bool(_field(reader, "add_space_prefix", True))
    proto.normalizer_spec.remove_extra_whitespaces = False
    proto.normalizer_spec.escape_whitespaces = True
    unk = _field(reader, "unknown_token_id")
    # the ModelProto without pieces, then its pieces in protobuf's wire format (a message's fields
    # may come in any order): 262k piece messages through the protobuf runtime took 10 s where
    # it runs in pure Python
    pieces = b"".join(_piece(token, score, UNKNOWN if i == unk else kind)  # Gemma's GGUF types <unk> CONTROL
                      for i, (token, score, kind) in enumerate(zip(tokens, scores, types)))
    return SentencePieceTokenizer(model_proto=proto.SerializeToString() + pieces,
                                  add_bos=bool(_field(reader, "add_bos_token", True)), source=path,
                                  literals=[i for i, kind in enumerate(types) if kind == USER_DEFINED])


def _varint(n):
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _piece(token, score, kind):
    """ModelProto field 1 (pieces): SentencePiece{piece = 1, score = 2, type = 3}. GGUF's token types
    are sentencepiece's (NORMAL 1 ... BYTE 6); anything else is NORMAL."""
    text = token.encode("utf-8")
    body = b"\x0a" + _varint(len(text)) + text + b"\x15" + struct.pack("<f", score) + \
        b"\x18" + bytes((kind if 1 <= kind <= BYTE else 1,))
    return b"\x0a" + _varint(len(body)) + body


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
