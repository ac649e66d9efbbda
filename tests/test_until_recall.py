"""train_lora.py --until-recall (issue 28): held-in recall, measured through the inference engine
during training, stops the run at the target; the curve lands in OUT; a resume restores it."""
import io
import json
import os

import pytest

from cold_ms import tasks
from cold_ms.formats.model import load_model
from cold_ms.pipeline.batching import Request
from cold_ms.training.probe import RecallProbe
from cold_ms.training.trainer import TrainConfig, Trainer
from helpers import run_script

QUESTIONS = 8


@pytest.fixture(scope="module")
def learnable(tmp_path_factory):
    """The tiny LLaMA with a tokenizer that spells digits and the chatml markers (the session's
    tiny tokenizer turns both into <unk>), and a task it learns in a few steps: every question's
    answer is "#### 7" (the tiny model learns formats, not bindings)."""
    import sentencepiece as spm
    import fixtures
    root = tmp_path_factory.mktemp("learnable")
    fixtures.write_model(str(root / "model"))
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([f"What is {a} plus {b}? #### {a + b}" for a in range(10) for b in range(10)]),
        model_writer=buf, vocab_size=64, model_type="bpe", bos_id=1, eos_id=2, unk_id=0, pad_id=-1, minloglevel=2,
        user_defined_symbols=["<|im_start|>", "<|im_end|>", "user", "assistant"])
    (root / "model" / "tokenizer.model").write_bytes(buf.getvalue())
    (root / "model" / "tokenizer_config.json").write_text('{"add_bos_token": true}')
    data = root / "sevens.jsonl"
    data.write_text("".join(json.dumps({"question": f"What is {a} plus {7 - a}?", "answer": "#### 7"}) + "\n"
                            for a in range(QUESTIONS)))
    return {"model": str(root / "model"), "task": f"jsonl:{data}"}


def _recall(model, adapter_dir, examples):
    """Greedy recall of an exported adapter (None: the base model) on `examples`, through a fresh
    engine, scored by the task: the reference the probe's numbers are checked against."""
    from cold_ms.formats.adapters import AdapterRegistry, load_peft_adapter
    from cold_ms.formats.chat import chat_prompt_ids
    from cold_ms.pipeline.engine import Engine
    names = [load_peft_adapter(adapter_dir, "x", model.config)] if adapter_dir else []
    engine = Engine(model, AdapterRegistry(names), slots=4, max_len=64, contrastive=False)
    requests = [Request(chat_prompt_ids(model.tokenizer, [{"role": "user", "content": e.question}], "chatml"),
                        adapter="x" if adapter_dir else None, amateur=None, beta=0.0, max_new_tokens=8)
                for e in examples]
    texts = [model.tokenizer.decode(r.token_ids) for r in engine.generate(requests)]
    return sum(tasks.score("jsonl:x", t, e)["correct"] for t, e in zip(texts, examples)) / len(examples)


SETTINGS = {"rank": 8, "batch": 4, "max_len": 128, "epochs": 20, "lr": 0.02}  # train_lora's alpha: 32


def _argv(learnable, out):
    return ["--model", learnable["model"], "--task", learnable["task"], "--out", str(out), "--chat-template",
            "chatml", *(x for k, v in SETTINGS.items() for x in (f"--{k.replace('_', '-')}", str(v))),
            "--until-recall", "1.0", "--probe-every", "2", "--probe-n", str(QUESTIONS), "--probe-tokens", "8"]


@pytest.fixture(scope="module")
def whole(learnable, tmp_path_factory):
    """One --until-recall run of train_lora.py: (OUT, its stderr)."""
    from helpers import run_main
    out = tmp_path_factory.mktemp("whole") / "run"
    code, _, err = run_main("train_lora", _argv(learnable, out))
    assert code == 0, err[-2000:]
    return out, err


def _curve(out):
    rows = (out / "probe.csv").read_text().splitlines()
    assert rows[0] == "step,recall"
    return [[int(s), float(r)] for s, r in (row.split(",") for row in rows[1:])]


def test_until_recall_stops_at_the_target_and_writes_the_curve(learnable, whole, capsys):
    out, err = whole
    curve = _curve(out)
    stop = curve[-1][0]
    assert [s for s, _ in curve] == list(range(2, stop + 1, 2)) and stop < 40  # before the plan's 40 steps
    assert curve[-1][1] == 1.0 and all(r < 1.0 for _, r in curve[:-1])
    assert f"stopped: held-in recall 1.000 >= 1 at step {stop} ({QUESTIONS} questions)" in err
    assert len((out / "loss.csv").read_text().splitlines()) == stop + 1
    assert (out / "probe.png").stat().st_size > 5_000
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["step"] == stop and state["probe"] == curve and state["stopped"]

    # the written adapter, in an engine of its own, recalls what the probe said; the base model does not
    model, examples = load_model(learnable["model"]), tasks.examples(learnable["task"], "train")
    assert _recall(model, str(out), examples) == 1.0
    assert _recall(model, None, examples) == 0.0

    code, _, err = run_script("train_lora", _argv(learnable, out), capsys)  # again: nothing more to do
    assert code == 0 and f"this run already stopped at step {stop}" in err
    assert _curve(out) == curve


def test_a_resume_restores_the_probe_history_and_stops_where_the_whole_run_did(learnable, whole, tmp_path):
    """Killed while probing step 4 (the checkpoint holds step 3 and the probe of step 2), then
    resumed: the same probes, the same stop, the same losses as the uninterrupted run."""
    out, _ = whole
    model, examples = load_model(learnable["model"]), tasks.examples(learnable["task"], "train")
    cfg = TrainConfig(alpha=32.0, save_every=3, **SETTINGS)

    def run(probe_wrapper=lambda p: p):
        trainer = Trainer(model, examples, cfg, str(tmp_path / "cut"), log=lambda m: None, chat_template="chatml")
        probe = RecallProbe(trainer, learnable["task"], tasks.held_in(examples, QUESTIONS), 1.0, 2, 8,
                            chat_template="chatml", log=lambda m: None)
        losses, _ = trainer.run(progress=False, probe=probe_wrapper(probe))
        return trainer, probe, losses

    class DiesAtSecondProbe:
        def __init__(self, probe):
            self.probe, self.history = probe, probe.history

        def __call__(self, step, last=False):
            if step == 4:
                raise KeyboardInterrupt("killed")
            stop = self.probe(step, last)
            self.history = self.probe.history
            return stop
    whole_curve = _curve(out)
    assert whole_curve[-1][0] > 4  # the cut comes before the whole run stopped
    with pytest.raises(KeyboardInterrupt):
        run(DiesAtSecondProbe)
    state = json.loads((tmp_path / "cut" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 3 and state["probe"] == whole_curve[:1]
    resumed, probe, losses = run()
    assert probe.history == whole_curve and resumed.stopped
    whole_losses = [float(row.split(",")[1]) for row in (out / "loss.csv").read_text().splitlines()[1:]]
    assert losses == pytest.approx(whole_losses, rel=1e-4)


def test_bad_probe_settings_are_refused(learnable, tmp_path, capsys):
    base = ["--model", learnable["model"], "--task", learnable["task"], "--out", str(tmp_path / "x"),
            "--chat-template", "chatml", "--max-len", "128"]
    code, _, err = run_script("train_lora", base + ["--until-recall", "1.5"], capsys)
    assert code == 2 and "--until-recall must be in (0, 1] (got 1.5)" in err
    code, _, err = run_script("train_lora", base + ["--until-recall", "0.9", "--probe-every", "0"], capsys)
    assert code == 2 and "--probe-every and the probe's tokens >= 1 (got 0, 32)" in err
    code, _, err = run_script("train_lora", base + ["--facts", "3"], capsys)
    assert code == 2 and "--facts is for the knowledge tasks" in err
    assert not os.path.exists(tmp_path / "x" / "checkpoint")
