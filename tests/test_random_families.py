"""bench's random models at the published sizes of each family (`--model random:NAME`)."""
import numpy as np
import pytest

from cold_ms.bench import random_model
from cold_ms.config import ModelConfig
from cold_ms.formats.model import load_model

# parameter counts published with each model (HF hub model cards / safetensors metadata)
PUBLISHED = {"qwen2.5-0.5b": 494_032_768, "qwen3-0.6b": 596_049_920, "gemma3-1b": 999_885_952,
             "llama3.2-1b": 1_235_814_400}
FAMILY = {"qwen2.5-0.5b": "qwen2", "qwen3-0.6b": "qwen3", "gemma3-1b": "gemma3", "llama3.2-1b": "llama"}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_named_sizes_have_the_published_shapes(name):
    cfg = ModelConfig.from_hf(random_model.SIZES[name])
    assert cfg.family == FAMILY[name] and cfg.num_params == PUBLISHED[name]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_random_checkpoint_of_each_family_loads(tmp_path, monkeypatch, name):
    """The same writer at a shrunk size: the family's tensors, norms near 1 once loaded, and the
    e2e benchmark's random:NAME accepts the name."""
    from cold_ms.bench.e2e import random_checkpoint
    small = dict(random_model.SIZES[name], vocab_size=256, hidden_size=64, intermediate_size=96,
                 num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=2, head_dim=32)
    monkeypatch.setitem(random_model.SIZES, name, small)
    model_dir, adapter = random_checkpoint(f"random:{name}", str(tmp_path))
    model = load_model(model_dir)
    assert model.config.family == FAMILY[name] and adapter.startswith("lora=")
    norms = [w for n, w in model.weights.items() if n.endswith("norm.weight")]
    assert len(norms) == 1 + 6 * {"qwen2": 2, "qwen3": 4, "gemma3": 6, "llama": 2}[FAMILY[name]]
    assert all(abs(float(np.mean(w)) - 1) < 0.05 for w in norms)
    assert sum(n.endswith(".bias") for n in model.weights) == (18 if FAMILY[name] == "qwen2" else 0)
