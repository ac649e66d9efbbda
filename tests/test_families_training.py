"""LoRA training on the families beyond LLaMA (tiny HF checkpoints): the exported PEFT adapter,
merged into the checkpoint by the numpy reference of the family, gives the trained model's logits
(and, where torch, transformers and peft are installed, PEFT loads it onto the HF model)."""
import json

import numpy as np
import pytest
from safetensors.numpy import load_file
from types import SimpleNamespace

import family_fixtures
import fixtures
import numpy_families as ref
from cold_ms import tasks
from cold_ms.formats.model import load_model
from cold_ms.training.trainer import TrainConfig, Trainer
from helpers import all_logits

PROMPT = [1, 9, 22, 41, 7, 60, 3, 12, 30]
TARGETS = tuple(fixtures.PROJ_DIMS)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """trained(name): (cfg, weights, trainer, losses, its folder) of the family's 2-step run, run
    once for the module (the PEFT check reads the Gemma 3 run the export check made)."""
    runs = {}

    def get(name):
        if name not in runs:
            root = tmp_path_factory.mktemp(name)
            runs[name] = (*_train(root, name), root)
        return runs[name]
    return get


def _train(tmp_path, name):
    cfg, weights = family_fixtures.write_family_model(str(tmp_path / "model"), name)
    fixtures.write_sentencepiece(str(tmp_path / "model" / "tokenizer.model"))
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"question": f"What is {a} plus {a}?", "answer": f"#### {2 * a}"}) + "\n"
                            for a in range(8)))
    model = load_model(str(tmp_path / "model"))
    train = TrainConfig(rank=4, alpha=8, targets=TARGETS, lr=5e-2, batch=4, max_len=128, max_steps=2)
    trainer = Trainer(model, tasks.examples(f"jsonl:{data}", "train"), train, str(tmp_path / "out"),
                      chat_template="chatml")
    losses, _ = trainer.run(progress=False)
    return cfg, weights, trainer, losses


@pytest.mark.parametrize("name", ["gemma3", "qwen2", "qwen3", "llama3"])
def test_trained_adapter_exports_what_was_trained(trained, name):
    cfg, weights, trainer, losses, tmp_path = trained(name)
    assert len(losses) == 2 and all(np.isfinite(losses))
    trained = all_logits(SimpleNamespace(lm=trainer.lm), PROMPT, 0)
    tensors = load_file(str(tmp_path / "out" / "adapter_model.safetensors"))
    assert len(tensors) == 2 * len(TARGETS) * cfg["num_hidden_layers"]
    merged = ref.effective_weights(weights, {"tensors": tensors, "scaling": 2.0})
    want = ref.forward(merged, cfg, PROMPT)
    assert np.abs(trained - want).max() / np.abs(want).max() < 2e-5
    assert np.abs(want - ref.forward({k: v.astype(np.float64) for k, v in weights.items()}, cfg, PROMPT)).max() > 1e-3


def test_peft_loads_the_gemma_adapter_onto_the_hf_model(trained):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    _, _, trainer, _, tmp_path = trained("gemma3")
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "model"), torch_dtype=torch.float32)
    hf = peft.PeftModel.from_pretrained(hf, str(tmp_path / "out")).eval()
    with torch.no_grad():
        got = hf(torch.tensor([PROMPT])).logits[0].numpy()
    assert np.abs(got - all_logits(SimpleNamespace(lm=trainer.lm), PROMPT, 0)).max() < 1e-3
