"""The numpy references of the families (numpy_families.py) against Hugging Face's own modelling
code on the same tiny checkpoints: optional (torch and transformers, skipped cleanly without),
it checks that the references the rest of the tests trust are the models HF runs."""
import numpy as np
import pytest

import family_fixtures
import numpy_families as ref

PROMPT = [1, 17, 42, 5, 88, 3, 60, 9, 21, 33, 7]


@pytest.mark.parametrize("name", sorted(family_fixtures.CONFIGS))
def test_reference_logits_equal_transformers(tmp_path, name):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cfg, weights = family_fixtures.write_family_model(str(tmp_path / "m"), name)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "m"), torch_dtype=torch.float64,
                                                              attn_implementation="eager").eval()
    with torch.no_grad():
        got = model(torch.tensor([PROMPT])).logits[0].numpy()
    want = ref.forward({k: v.astype(np.float64) for k, v in weights.items()}, cfg, PROMPT)
    # HF computes the rope tables in float32 even for a float64 model
    assert np.abs(got - want).max() < 2e-6 * max(1.0, np.abs(want).max()), np.abs(got - want).max()
