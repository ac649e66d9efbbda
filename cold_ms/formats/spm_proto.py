"""A sentencepiece ModelProto written in protobuf's wire format, without the protobuf runtime.

Two reasons: 262k piece messages built through the runtime took 10 s where it runs in pure
Python (as after `import mindspore`), and importing sentencepiece_model_pb2 before mindspore
loads the C protobuf backend, after which mindspore's own *_pb2 modules fail to import.
Field numbers are sentencepiece_model.proto's.
"""
import struct

BPE = 2  # TrainerSpec.ModelType
_TRAINER = {"model_type": 3, "byte_fallback": 35, "unk_id": 40, "bos_id": 41, "eos_id": 42, "pad_id": 43,
            "unk_piece": 45, "bos_piece": 46, "eos_piece": 47, "pad_piece": 48}
_NORMALIZER = {"name": 1, "add_dummy_prefix": 3, "remove_extra_whitespaces": 4, "escape_whitespaces": 5}


def _varint(n):
    n &= (1 << 64) - 1  # negative int32s are written as their 64-bit two's complement
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number, value):
    if isinstance(value, str):
        value = value.encode("utf-8")
    if isinstance(value, bytes):
        return _varint(number << 3 | 2) + _varint(len(value)) + value
    return _varint(number << 3) + _varint(int(value))  # ints, bools, enums


def _message(numbers, fields):
    return b"".join(_field(numbers[name], value) for name, value in fields.items())


def _piece(text, score, kind):
    """SentencePiece{piece = 1, score = 2 (float), type = 3} as ModelProto field 1."""
    body = _field(1, text) + b"\x15" + struct.pack("<f", score) + b"\x18" + bytes((kind,))
    return b"\x0a" + _varint(len(body)) + body


def model_proto(pieces, trainer, normalizer):
    """Serialized ModelProto of `pieces` [(text, score, type 1..6)] and the named TrainerSpec and
    NormalizerSpec fields (a message's fields may come in any order)."""
    return (b"".join(_piece(*p) for p in pieces) + _field(2, _message(_TRAINER, trainer))
            + _field(3, _message(_NORMALIZER, normalizer)))
