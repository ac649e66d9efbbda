"""scripts/train_lora.py: a short run on the tiny model, its PEFT export, and resuming."""
import json
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
from safetensors.numpy import load_file

import numpy_llama as ref
from cold_ms import tasks
from cold_ms.formats.model import load_model
from cold_ms.training.trainer import TrainConfig, Trainer
from helpers import all_logits, engine_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT = [1, 9, 22, 41, 7, 60, 3]


def _jsonl(tmp_path, n=24):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"question": f"What is {a} plus {a}?", "answer": f"#### {2 * a}"}) + "\n"
                            for a in range(n)))
    return str(path)


def test_two_steps_export_a_peft_adapter_that_reloads_equal(tiny, tmp_path):
    model = load_model(tiny["model_dir"])
    examples = tasks.examples(f"jsonl:{_jsonl(tmp_path)}", "train")
    cfg = TrainConfig(rank=4, alpha=8, targets=("q_proj", "v_proj", "down_proj"), lr=5e-2, batch=4,
                      max_len=128, max_steps=2, save_every=1)
    trainer = Trainer(model, examples, cfg, str(tmp_path / "out"), chat_template="chatml")
    losses, _ = trainer.run(progress=False)
    assert len(losses) == 2 and all(np.isfinite(losses))
    trained = all_logits(SimpleNamespace(lm=trainer.lm), PROMPT, 0)

    # the exported adapter, loaded like any PEFT adapter, reproduces the trained model
    peft = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert peft["r"] == 4 and peft["lora_alpha"] == 8 and peft["peft_type"] == "LORA"
    reloaded = engine_for(dict(tiny, adapter_dir={"t": str(tmp_path / "out")}), ("t",))
    # 2e-5 on logits up to ~4: float32 rounding of two paths (training's MatMuls, the kernels' sums)
    assert np.abs(all_logits(reloaded, PROMPT, 0) - trained).max() < 2e-5
    tensors = load_file(str(tmp_path / "out" / "adapter_model.safetensors"))
    assert tensors["base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"].shape == (32, 4)
    want = ref.forward(ref.effective_weights(tiny["weights"], {"tensors": tensors, "scaling": 2.0}), tiny["cfg"], PROMPT)
    assert np.abs(trained - want).max() < 5e-5
    assert np.abs(trained - all_logits(reloaded, PROMPT, -1)).max() > 1e-3  # training changed the model


def test_an_interrupted_run_resumes(tiny, tmp_path):
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "train_lora.py"), "--model", tiny["model_dir"],
           "--train-file", _jsonl(tmp_path, 40), "--out", str(tmp_path / "run"), "--rank", "4", "--batch", "4",
           "--max-len", "128", "--epochs", "2", "--save-every", "1", "--chat-template", "chatml"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = tmp_path / "run" / "checkpoint" / "state.json"
    deadline = time.time() + 300
    while not (state.exists() and json.loads(state.read_text())["step"] >= 2) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stopped_at = json.loads(state.read_text())["step"]
    assert 2 <= stopped_at < 20
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert f"resuming at step {stopped_at} of 20" in out.stderr
    final = json.loads(state.read_text())
    assert final["step"] == 20 and len(final["losses"]) == 20
    assert (tmp_path / "run" / "adapter_model.safetensors").exists() and (tmp_path / "run" / "loss.png").exists()


def test_a_kill_between_checkpoint_and_state_resumes_exactly(tiny, tmp_path, monkeypatch):
    model = load_model(tiny["model_dir"])
    examples = tasks.examples(f"jsonl:{_jsonl(tmp_path)}", "train")
    cfg = TrainConfig(rank=4, alpha=8, targets=("q_proj", "v_proj"), lr=5e-2, batch=4, max_len=128,
                      max_steps=4, save_every=1)
    whole = Trainer(model, examples, cfg, str(tmp_path / "whole"), chat_template="chatml")
    want_losses, _ = whole.run(progress=False)

    real_replace, commits = os.replace, []

    def dies_at_third_commit(src, dst):  # step 3's optimizer state is on disk, its state.json is not
        if dst.endswith("state.json"):
            commits.append(dst)
            if len(commits) == 3:
                raise KeyboardInterrupt("killed")
        real_replace(src, dst)
    monkeypatch.setattr(os, "replace", dies_at_third_commit)
    try:
        Trainer(model, examples, cfg, str(tmp_path / "cut"), chat_template="chatml").run(progress=False)
    except KeyboardInterrupt:
        pass
    monkeypatch.setattr(os, "replace", real_replace)
    resumed = Trainer(model, examples, cfg, str(tmp_path / "cut"), chat_template="chatml")
    losses, _ = resumed.run(progress=False)
    assert json.loads((tmp_path / "cut" / "checkpoint" / "state.json").read_text())["step"] == 4
    np.testing.assert_allclose(losses, want_losses, rtol=1e-5)
    np.testing.assert_allclose(all_logits(SimpleNamespace(lm=resumed.lm), PROMPT, 0),
                               all_logits(SimpleNamespace(lm=whole.lm), PROMPT, 0), atol=1e-5)


def test_snapshots_write_the_adapter_of_those_steps(tiny, tmp_path, capsys):
    """An early checkpoint of a run, written as a PEFT adapter, loads as an amateur (scripts/train_lora.py
    in-process; the fresh process is test_an_interrupted_run_resumes's)."""
    from helpers import run_script
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"question": f"q {i}", "answer": f"a {i}"}) + "\n" for i in range(12)))
    out = tmp_path / "run"
    code, _, err = run_script("train_lora", ["--model", tiny["model_dir"], "--train-file", str(data), "--out", str(out),
                                             "--batch", "4", "--max-steps", "3", "--rank", "4", "--snapshots", "1,2",
                                             "--chat-template", "chatml"], capsys)
    assert code == 0, err[-2000:]
    from cold_ms.formats.adapters import load_peft_adapter
    from cold_ms.formats.model import load_model
    cfg = load_model(tiny["model_dir"]).config
    early, late = (load_peft_adapter(str(out / f"step-{n}"), f"s{n}", cfg) for n in (1, 2))
    final = load_peft_adapter(str(out), "final", cfg)
    key = next(iter(final.tensors))
    assert not np.array_equal(early.tensors[key][1], late.tensors[key][1])  # B moves every step
    assert not np.array_equal(late.tensors[key][1], final.tensors[key][1])


def test_what_a_run_cannot_do_is_said_with_numbers(tiny, tmp_path):
    """issue 27, item 9: no example fits in max_len (with the lengths), and --max-steps above what the
    epochs hold (it ran fewer steps without a word)."""
    import pytest
    from cold_ms.errors import ConfigError
    model = load_model(tiny["model_dir"])
    examples = tasks.examples(f"jsonl:{_jsonl(tmp_path, 12)}", "train")
    with pytest.raises(ConfigError, match=r"no training example fits in max_len 4: the 12 examples are \d+-\d+ tokens"):
        Trainer(model, examples, TrainConfig(rank=4, batch=4, max_len=4), str(tmp_path / "a"), chat_template="chatml")
    said = []
    trainer = Trainer(model, examples, TrainConfig(rank=4, batch=4, max_len=128, max_steps=20), str(tmp_path / "b"),
                      log=said.append, chat_template="chatml")
    assert len(trainer.plan) == 3
    assert said == ["--max-steps 20: 1 epoch(s) of 12 examples in batches of 4 make only 3 steps; running 3 "
                    "(raise --epochs for more)"]


def test_train_lora_help_shows_the_defaults(capsys):
    from helpers import run_script
    code, out, _ = run_script("train_lora", ["--help"], capsys)
    assert code == 0 and "LoRA rank r (default: 16)" in out and "(default: 32.0)" in out


def test_a_batch_packs_every_answer_token_once():
    """make_batch: the answer tokens of all rows packed into N picks (positions predicting them, row after
    row), the rest padding; batch_shape's N is the fullest batch's answer tokens, rounded up to 32."""
    from cold_ms.training.data import batch_shape, make_batch
    encoded = [([5, 6, 7, 8], 2), ([9, 10, 11], 1), ([3] * 40, 33)]
    assert batch_shape(encoded, [[0, 1], [2]]) == (64, 64) and batch_shape(encoded, [[0, 1]]) == (64, 32)
    tokens, pick, labels = make_batch(encoded[:2], 3, (8, 32))
    assert tokens.tolist() == [[5, 6, 7, 8, 0, 0, 0, 0], [9, 10, 11, 0, 0, 0, 0, 0], [0] * 8]
    assert pick[:3].tolist() == [1, 2, 9] and labels[:3].tolist() == [7, 8, 11]  # 9 = row 1, position 1
    assert (pick[3:] == 0).all() and (labels[3:] == -100).all()
