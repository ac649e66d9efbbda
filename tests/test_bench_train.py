"""`bench.py train`'s peer set-up: the batch handed to transformers + PEFT is ours (hand-made case), and
(optional: torch, transformers and peft) PEFT's loss and LoRA gradients at step 0 equal ours."""
import json

import numpy as np
import pytest

from cold_ms.bench.train import OursSide, PeftSide, hf_batch


def test_the_peer_batch_labels_the_token_after_each_pick():
    tokens = np.array([[5, 6, 7, 8], [9, 10, 11, 0]], np.int32)
    pick = np.array([1, 2, 5, 0], np.int32)  # row 0 positions 1, 2; row 1 position 1; padding
    labels = np.array([7, 8, 11, -100], np.int32)
    ids, mask, hf_labels = hf_batch(tokens, pick, labels, [4, 3])
    assert ids.dtype == np.int64 and ids.tolist() == tokens.tolist()
    assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert hf_labels.tolist() == [[-100, -100, 7, 8], [-100, -100, 11, -100]]


def test_peft_step_zero_equals_ours(tiny, tmp_path):
    """Same weights, batch and initial A (B = 0): the same loss, and the same gradient of every lora_B
    (ours holds scaling * B^T, so PEFT's gradient is scaling times ours transposed)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"question": f"What is {a} plus {a}?", "answer": f"#### {2 * a}"}) + "\n"
                            for a in range(3)))
    spec = {"model": tiny["model_dir"], "task": f"jsonl:{data}", "chat_template": "chatml", "batch": 3, "rank": 4,
            "alpha": 8.0, "targets": "q_proj,v_proj,down_proj", "steps": 1}
    ours = OursSide(spec, str(tmp_path / "ours"))
    loss, grads = ours.trainer._batch_grads(ours.rows)
    mine = {p.name: g.asnumpy()[0] for p, g in zip(ours.trainer.grad_step.weights, grads) if "lora_b" in p.name}
    peer = PeftSide(ours.hf_dir, ours.adapter_dir, ours.batch, threads=1)
    assert abs(peer.loss_and_backward() - loss) < 1e-5 * loss
    module = lambda name: name[name.index("model.layers."):].split(".lora_")[0]  # noqa: E731
    theirs = {module(n): p.grad.numpy() for n, p in peer.model.named_parameters() if "lora_B" in n}
    assert len(theirs) == len(mine) == 3 * 2  # three targets on the tiny model's two layers
    for name, grad in mine.items():
        want = theirs[module(name)]
        assert np.abs(2.0 * grad.T - want).max() <= 1e-4 * np.abs(want).max(), name
    assert max(np.abs(g).max() for g in theirs.values()) > 1e-3  # the gradients compared are not all zero


def test_without_the_peer_ours_runs_alone_with_one_line_saying_why(tiny, tmp_path, capsys, monkeypatch):
    from cold_ms.bench import train
    from helpers import script
    monkeypatch.setattr(train, "PEER_MODULES", ("torch", "no_such_module_peft"))
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"question": "What is 1 plus 1?", "answer": "#### 2"}) + "\n")
    out = tmp_path / "train.json"
    script("bench").main(["train", "--model", tiny["model_dir"], "--task", f"jsonl:{data}", "--chat-template", "chatml",
                          "--batch", "1", "--rank", "2", "--steps", "1", "--rounds", "1", "--json", str(out)])
    said = [line for line in capsys.readouterr().err.splitlines() if "peer skipped" in line]
    assert said == ["bench.py train: peer skipped: no_such_module_peft not installed (pip install torch transformers "
                    "peft)"]
    result = json.loads(out.read_text())
    assert [s["side"] for s in result["sides"]] == ["cold_ms"] and "ratio_ours_to_peft" not in result
