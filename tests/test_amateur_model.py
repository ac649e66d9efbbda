"""A separate model as the amateur (the paper's §5.1), beside the expert's model in one graph:
CoLD tokens against the numpy reference run with the second model's weights."""
import os
import shutil

import numpy as np
import pytest

import fixtures
import numpy_llama as ref
from cold_ms.errors import ConfigError, InputError
from cold_ms.formats.adapters import AdapterRegistry, load_peft_adapter
from cold_ms.formats.model import load_model
from cold_ms.pipeline.batching import Request
from cold_ms.pipeline.engine import Engine

PROMPTS = [[5, 9, 14, 3], [7, 30, 2, 2, 81, 40, 11], [60]]


@pytest.fixture(scope="module")
def second(tiny, tmp_path_factory):
    """Another model of the same family and tokenizer: the tiny config, other weights, more layers."""
    root = str(tmp_path_factory.mktemp("amateur") / "model")
    cfg, weights = fixtures.write_model(root, cfg=dict(fixtures.TINY, num_hidden_layers=3), seed=42)
    for name in ("tokenizer.model", "tokenizer_config.json"):
        shutil.copy(os.path.join(tiny["model_dir"], name), root)
    return root, cfg, weights


@pytest.mark.parametrize("mode", ["graph", "pynative"])
def test_amateur_model_tokens_match_the_reference(tiny, second, mode):
    model = load_model(tiny["model_dir"])
    adapters = AdapterRegistry([load_peft_adapter(tiny["adapter_dir"]["all"], "all", model.config)])
    eng = Engine(model, adapters, slots=2, max_len=64, mode=mode, amateur_model=load_model(second[0]),
                 activations="float32")
    got = eng.generate([Request(p, adapter="all", amateur="model", alpha=0.1, beta=0.8, max_new_tokens=6,
                                ignore_eos=True) for p in PROMPTS])
    expert = ref.effective_weights(tiny["weights"], tiny["adapters"]["all"])
    amateur = ref.effective_weights(second[2])
    for p, r in zip(PROMPTS, got):  # the amateur's config differs (3 layers): its own forward
        seq, want = list(p), []
        for _ in range(6):
            s_e = ref.forward(expert, tiny["cfg"], seq)[-1]
            s_a = ref.forward(amateur, second[1], seq)[-1]
            want.append(ref.cold_next(s_e, s_a, 0.1, 0.8))
            seq.append(want[-1])
        assert r.token_ids == want


def test_amateur_model_requests_and_vocabularies_are_checked(tiny, second, tmp_path):
    model = load_model(tiny["model_dir"])
    eng = Engine(model, slots=1, max_len=64, amateur_model=load_model(second[0]))
    with pytest.raises(InputError, match="amateur='model'"):
        eng.generate([Request([5, 9], amateur="base", max_new_tokens=3)])
    assert eng.generate([Request([5, 9], amateur=None, max_new_tokens=3)])[0].token_ids  # greedy still runs
    other = str(tmp_path / "other")
    fixtures.write_model(other, cfg=dict(fixtures.TINY, vocab_size=120), seed=1)
    with pytest.raises(ConfigError, match="must share one tokenizer"):
        Engine(model, slots=1, max_len=64, amateur_model=load_model(other))
    plain = Engine(model, slots=1, max_len=64)
    with pytest.raises(InputError, match="no separate amateur model"):
        plain.generate([Request([5, 9], amateur="model", max_new_tokens=3)])
