"""Bad input gets a ColdError (a ValueError) with a readable message, never a stack trace."""
import json
import os
import subprocess
import sys

import pytest

import fixtures
from cold_ms.errors import AdapterError, CheckpointError, ColdError, ConfigError, InputError
from cold_ms.formats.adapters import load_peft_adapter
from cold_ms.pipeline.batching import Request
from cold_ms.formats.model import load_model
from helpers import engine_for, run_script

INFER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "infer.py")


@pytest.fixture(scope="module")
def eng(tiny):
    return engine_for(tiny, ("qv",), max_len=32)


@pytest.mark.parametrize("kw,match", [
    (dict(alpha=0.0), r"alpha must be in \(0, 1\]"), (dict(alpha=1.5), "alpha"),
    (dict(beta=-1.0), "beta must be >= 0"), (dict(adapter="nope"), "unknown adapter 'nope'"),
    (dict(amateur="nope"), "unknown adapter"), (dict(prompt_ids=[]), "empty prompt"),
    (dict(prompt_ids=[1] * 30), "exceeds the context of 32"), (dict(prompt_ids=[1, 500]), r"\[0, 96\)"),
    (dict(max_new_tokens=0), "max_new_tokens"),
])
def test_bad_requests(eng, kw, match):
    req = dict(prompt_ids=[1, 2, 3], adapter="qv", amateur="base", max_new_tokens=4)
    req.update(kw)
    with pytest.raises(ColdError, match=match):
        eng.generate([Request(**req)])


def test_adapter_for_another_base_model(tiny, tmp_path):
    other = dict(fixtures.TINY, hidden_size=48)
    fixtures.write_adapter(str(tmp_path / "a"), other)
    model = load_model(tiny["model_dir"])
    with pytest.raises(AdapterError, match="different base model"):
        load_peft_adapter(str(tmp_path / "a"), "a", model.config)


def test_adapter_with_too_many_layers(tiny, tmp_path):
    fixtures.write_adapter(str(tmp_path / "a"), tiny["cfg"], layers=[0, 5])
    with pytest.raises(AdapterError, match="layer 5 does not exist"):
        load_peft_adapter(str(tmp_path / "a"), "a", load_model(tiny["model_dir"]).config)


def test_missing_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(str(tmp_path / "nothing"))
    os.makedirs(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(json.dumps(fixtures.TINY))
    (tmp_path / "m" / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(CheckpointError, match="pickled .bin checkpoints are not loaded"):
        load_model(str(tmp_path / "m"))
    with pytest.raises(AdapterError, match="no adapter_config.json"):
        load_peft_adapter(str(tmp_path), "x", None)


def test_truncated_and_corrupt_checkpoints(tmp_path):
    fixtures.write_model(str(tmp_path / "m"))
    path = tmp_path / "m" / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(str(tmp_path / "m"))
    path.write_bytes(b"\xff" * 64)
    with pytest.raises(CheckpointError, match="corrupt safetensors header"):
        load_model(str(tmp_path / "m"))


def test_checkpoint_config_mismatch(tmp_path):
    fixtures.write_model(str(tmp_path / "m"))
    cfg = dict(fixtures.TINY, intermediate_size=64)
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not match"):
        load_model(str(tmp_path / "m"))


@pytest.mark.parametrize("change,match", [
    (dict(model_type="gpt2"), "model_type 'gpt2' is not supported"),
    (dict(num_key_value_heads=3), "not a multiple"),
    (dict(rope_scaling={"rope_type": "yarn", "factor": 4.0}), "'rope_scaling': rope type 'yarn' is not supported"),
])
def test_unsupported_configs(tmp_path, change, match):
    fixtures.write_model(str(tmp_path / "m"))
    (tmp_path / "m" / "config.json").write_text(json.dumps(dict(fixtures.TINY, **change)))
    with pytest.raises(ConfigError, match=match):
        load_model(str(tmp_path / "m"))


def _infer_argv(tiny, extra):
    argv = ["--model", tiny["model_dir"], "--adapter", f"qv={tiny['adapter_dir']['qv']}", "--max-new-tokens", "4"]
    return argv + ([] if any(a.startswith("--prompt") for a in extra) else ["--prompt-ids", "1,2,3"]) + extra


@pytest.mark.parametrize("extra,match", [
    (["--alpha", "0"], "alpha must be in"), (["--beta", "-1"], "beta must be >= 0"),
    (["--expert", "nope"], "unknown adapter 'nope'"), (["--amateur", "nope"], "unknown adapter"),
    (["--prompt-ids", ",".join(["3"] * 200)], "exceeds the model's context"),
    (["--prompt", ""], "empty prompt"), (["--adapter", "broken"], "NAME=DIR"),
    # issue 27, item 10: what passed silently
    (["--prompt-ids", "1,,2"], r"got '1,,2' \(item 2 is ''\)"), (["--prompt-ids", "1,2,"], "item 3 is ''"),
    (["--no-adapter"], "--no-adapter runs the base model alone: drop --adapter"),
    (["--amateur", "qv"], "--amateur qv is the expert itself"),
])
def test_infer_cli_errors_are_one_line(tiny, capsys, extra, match):
    """In-process (main() is what the process runs); the fresh process is tested once below."""
    _one_error_line(run_script("infer", _infer_argv(tiny, extra), capsys), match)
    assert isinstance(InputError("x"), ValueError)


def test_a_cli_error_in_a_fresh_process(tiny):
    """The exit code 2 path as a user meets it: a new interpreter, one stderr line, nothing on stdout."""
    out = subprocess.run([sys.executable, INFER, *_infer_argv(tiny, ["--alpha", "0"])], capture_output=True,
                         text=True, timeout=300)
    _one_error_line((out.returncode, out.stdout, out.stderr), "alpha must be in")


def test_serve_cli_bad_port_is_one_line(capsys):
    """issue 27, item 6: --port 99999 printed a 64-line traceback."""
    _one_error_line(run_script("serve", ["--port", "99999"], capsys), r"--port must be in 1\.\.65535, got 99999")


def _one_error_line(result, match):
    code, stdout, stderr = result
    lines = stderr.strip().splitlines()
    assert code == 2 and stdout == "", stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and __import__("re").search(match, lines[0]), lines


def _broken(tiny, tmp_path, what):
    """(model dir, adapter spec) with one file broken as the issue found them."""
    model, adapter = tiny["model_dir"], f"a={tiny['adapter_dir']['qv']}"
    if what == "adapter is a file":
        (tmp_path / "file").write_text("x")
        adapter = f"a={tmp_path / 'file'}"
    elif what.startswith("adapter"):
        fixtures.write_adapter(str(tmp_path / "a"), tiny["cfg"])
        cfg = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
        doc = [cfg] if what == "adapter config is a list" else dict(cfg, lora_alpha="abc")
        (tmp_path / "a" / "adapter_config.json").write_text(json.dumps(doc))
        adapter = f"a={tmp_path / 'a'}"
    else:
        fixtures.write_model(str(tmp_path / "m"))
        doc = [fixtures.TINY] if what == "model config is a list" else dict(fixtures.TINY, vocab_size="big")
        (tmp_path / "m" / "config.json").write_text(json.dumps(doc))
        model = str(tmp_path / "m")
    return model, adapter


@pytest.mark.parametrize("what,match", [
    ("adapter is a file", r"/file is a file, not a PEFT LoRA adapter directory"),
    ("adapter config is a list", r"a/adapter_config.json: expected a JSON object of named fields, got a list"),
    ("adapter lora_alpha", r"a/adapter_config.json: 'lora_alpha' must be a finite number > 0, got the string 'abc'"),
    ("model config is a list", r"m/config.json: expected a JSON object of named fields, got a list"),
    ("model vocab_size", r"m/config.json: 'vocab_size' must be a positive integer, got the string 'big'"),
])
def test_broken_files_are_one_error_line(tiny, tmp_path, capsys, what, match):
    model, adapter = _broken(tiny, tmp_path, what)
    _one_error_line(run_script("infer", ["--model", model, "--adapter", adapter, "--prompt-ids", "1,2,3",
                                         "--max-new-tokens", "2"], capsys), match)


def test_convert_to_a_file_is_one_error_line(tiny, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for out_dir, match in ((tmp_path / "file", r"--out .*/file is a file, not a directory"),
                           (tmp_path / "file" / "sub", r"--out .*/file/sub: .*/file is not a writable directory")):
        _one_error_line(run_script("convert", ["--model", tiny["model_dir"], "--out", str(out_dir)], capsys), match)
    assert (tmp_path / "file").read_text() == "x"
