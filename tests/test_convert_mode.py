"""scripts/convert.py's model.ckpt: not left owner-read-only (MindSpore writes 0400)."""
import os
import stat

from cold_ms.formats.convert import convert
from cold_ms.formats.model import load_model


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_checkpoint_takes_the_mode_of_the_files_beside_it(tiny, tmp_path):
    old = os.umask(0o022)
    try:
        out = convert(tiny["model_dir"], str(tmp_path / "out"))
    finally:
        os.umask(old)
    assert _mode(os.path.join(out, "model.ckpt")) == _mode(os.path.join(out, "config.json")) == 0o644
    assert load_model(out).config.vocab_size == tiny["cfg"]["vocab_size"]
