"""A GGUF file's metadata and tensor table, read in one pass over its memory map.

The `gguf` package's GGUFReader makes a numpy view per array element: Gemma 3's 262,144-token
vocabulary (tokens, scores, types) took it 20 s to parse here. This reads the same layout
(llama.cpp's gguf.h: header, key/value pairs, tensor infos, aligned data) with struct and
np.frombuffer in well under a second, and serves what the loaders use of a GGUFReader:
`fields[key].contents()` and `tensors` (name, tensor_type, shape in GGUF order, data as a
read-only view of the map: uint8 rows of blocks for block types, typed arrays otherwise).
"""
import struct
from dataclasses import dataclass

import numpy as np

_MAGIC, _VERSIONS = b"GGUF", (2, 3)
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_TYPED = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I8": np.int8, "I16": np.int16,
          "I32": np.int32, "I64": np.int64}  # stored element by element; every other type in blocks


class Field:
    """One metadata value; contents() as GGUFReader's: a str, number, bool or list."""

    def __init__(self, value):
        self.value = value

    def contents(self):
        return self.value.tolist() if isinstance(self.value, np.ndarray) else self.value


@dataclass
class Tensor:
    name: str
    tensor_type: object  # gguf.GGMLQuantizationType
    shape: tuple         # GGUF order: the row length first
    data: np.ndarray


class _Cursor:
    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def take(self, fmt):
        value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return value

    def string(self):
        n = self.take("<Q")
        if self.pos + n > len(self.buf):
            raise ValueError("a string runs past the end of the file")
        text = bytes(self.buf[self.pos:self.pos + n]).decode("utf-8")
        self.pos += n
        return text

    def value(self, kind):
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            return self.array(self.take("<I"), self.take("<Q"))
        if kind not in _SCALARS:
            raise ValueError(f"unknown metadata value type {kind}")
        return self.take(_SCALARS[kind])

    def array(self, kind, count):
        if kind in _SCALARS:  # numbers at C speed: one frombuffer, not one view per element
            dtype = np.dtype(_SCALARS[kind])
            if self.pos + count * dtype.itemsize > len(self.buf):
                raise ValueError("an array runs past the end of the file")
            out = np.frombuffer(self.buf, dtype, count, self.pos)
            self.pos += count * dtype.itemsize
            return out.astype(bool) if kind == 7 else out
        if count > len(self.buf):
            raise ValueError(f"an array claims {count} items, more than the file's bytes")
        return [self.value(kind) for _ in range(count)]


class GGUFFile:
    """The metadata (`fields`) and tensor table (`tensors`) of the GGUF file at `path`."""

    def __init__(self, path):
        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
        self.map = np.memmap(path, np.uint8, mode="r")
        cur = _Cursor(memoryview(self.map))
        try:
            if bytes(self.map[:4]) != _MAGIC:
                raise ValueError("no GGUF magic")
            version = cur.take("<4xI")
            if version not in _VERSIONS:
                raise ValueError(f"GGUF version {version} is not supported (2, 3)")
            n_tensors, n_fields = cur.take("<Q"), cur.take("<Q")
            self.fields = {}
            for _ in range(n_fields):
                key = cur.string()
                self.fields[key] = Field(cur.value(cur.take("<I")))
            infos = [(cur.string(), [cur.take("<Q") for _ in range(cur.take("<I"))], cur.take("<I"), cur.take("<Q"))
                     for _ in range(n_tensors)]
        except struct.error as e:
            raise ValueError(f"the header ends early ({e})") from None
        align = int(self.fields["general.alignment"].contents()) if "general.alignment" in self.fields else 32
        start = -(-cur.pos // align) * align
        self.tensors = [self._tensor(start, info, GGMLQuantizationType, GGML_QUANT_SIZES) for info in infos]

    def _tensor(self, start, info, types, sizes):
        name, dims, kind, offset = info
        wtype = types(kind)
        block, block_bytes = sizes[wtype]
        rows = [int(d) for d in reversed(dims)]
        typed = _TYPED.get(wtype.name)
        if typed is None:
            if rows[-1] % block:
                raise ValueError(f"tensor {name}: rows of {rows[-1]} are not whole {wtype.name} blocks")
            rows[-1] = rows[-1] // block * block_bytes
        dtype = np.dtype(typed or np.uint8)
        nbytes = int(np.prod(rows)) * dtype.itemsize
        begin = start + offset
        if begin + nbytes > len(self.map):
            raise ValueError(f"tensor {name} runs past the end of the file")
        data = self.map[begin:begin + nbytes].view(dtype).reshape(rows)
        return Tensor(name, wtype, tuple(int(d) for d in dims), data)
