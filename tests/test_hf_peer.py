"""Cross-check against Hugging Face transformers + PEFT on the same files (when installed).

The numpy reference (numpy_llama.py) is the oracle that always runs; this adds the
implementation users compare us with. torch is not a cold_ms dependency, so the module
is skipped where it is absent (pip install torch==2.13.0 peft to run it).
"""
import importlib.util

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("torch", "peft")),
                                reason="torch and peft are not installed (optional peers)")

from cold_ms.pipeline.batching import Request  # noqa: E402
from helpers import all_logits, engine_for  # noqa: E402

PROMPTS = [[1, 5, 7, 9], [1, 20, 30, 31]]


def _hf(tiny):
    import torch
    from peft import PeftModel
    from transformers import LlamaForCausalLM
    base = LlamaForCausalLM.from_pretrained(tiny["model_dir"], torch_dtype=torch.float32)
    model = PeftModel.from_pretrained(base, tiny["adapter_dir"]["all"], adapter_name="all")
    model.load_adapter(tiny["adapter_dir"]["qv"], adapter_name="qv")
    return model.eval()


def test_logits_match_transformers_peft(tiny):
    import torch
    hf = _hf(tiny)
    eng = engine_for(tiny, ("qv", "all"))
    for name, slot in (("all", 1), ("qv", 0), ("__base__", -1)):
        with torch.inference_mode():
            want = hf(input_ids=torch.tensor([PROMPTS[0]]), adapter_names=[name]).logits[0].numpy()
        assert np.abs(all_logits(eng, PROMPTS[0], slot) - want).max() < 1e-4


def test_cold_tokens_match_transformers_peft_mixed_batch(tiny):
    import torch
    hf = _hf(tiny)
    names = ["all", "all", "__base__", "__base__"]  # experts then amateurs, as in our rows
    seqs = [list(p) for p in PROMPTS]
    for _ in range(8):
        with torch.inference_mode():
            logits = hf(input_ids=torch.tensor(seqs + seqs), adapter_names=names).logits[:, -1].numpy()
        for i in range(2):
            e, a = logits[i], logits[2 + i]
            s = np.where(e >= np.log(0.1) + e.max(), 1.5 * e - 0.5 * a, -np.inf)
            seqs[i].append(int(np.argmax(s)))
    eng = engine_for(tiny, ("qv", "all"), slots=2)
    ours = eng.generate([Request(p, adapter="all", amateur="base", alpha=0.1, beta=0.5, max_new_tokens=8,
                                 ignore_eos=True) for p in PROMPTS])
    assert [r.token_ids for r in ours] == [s[len(p):] for s, p in zip(seqs, PROMPTS)]
