"""The peer `bench.py e2e --peer hf` compares with: the same CoLD with Hugging Face
transformers + PEFT on the CPU, expert and amateur rows in one mixed-adapter batch
(adapter_names=[expert]*B + ["__base__"]*B) with a KV cache, scoring in torch.
Needs torch (pip install torch==2.13.0, the local CPU wheel), transformers and peft.
"""
import json
import os
import tempfile
import time

import numpy as np

ALPHA, BETA = 0.1, 0.5


def export_hf(model, directory):
    """The loaded (dequantised, float32) weights as a HF LLaMA directory."""
    from safetensors.numpy import save_file
    weights = model.float_weights()
    save_file(weights, os.path.join(directory, "model.safetensors"))
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(model.config.to_hf(), f)


class HFVariant:
    def __init__(self, model, adapter_dir, expert, batch):
        import torch
        from peft import PeftModel
        from transformers import LlamaForCausalLM
        torch.set_num_threads(os.cpu_count() or 1)
        self.torch, self.batch = torch, batch
        self.tmp = tempfile.mkdtemp(prefix="cold_hf_")
        export_hf(model, self.tmp)
        base = LlamaForCausalLM.from_pretrained(self.tmp, torch_dtype=torch.float32)
        self.model = PeftModel.from_pretrained(base, adapter_dir, adapter_name=expert).eval()
        self.model.to(torch.float32)
        self.names = [expert] * batch + ["__base__"] * batch
        untied = not model.config.tie_word_embeddings  # a step gathers one row of an untied embedding
        self.summary = "float32 (torch)"
        self.base_bytes = sum(w.nbytes for n, w in model.float_weights().items()
                              if not (untied and n == "model.embed_tokens.weight"))

    def _scores(self, logits):
        torch = self.torch
        e, a = logits[:self.batch], logits[self.batch:]
        valid = e >= np.log(ALPHA) + e.max(-1, keepdim=True).values
        return torch.where(valid, (1 + BETA) * e - BETA * a, torch.full_like(e, float("-inf"))).argmax(-1)

    def prefill(self, prompt):
        torch = self.torch
        ids = torch.tensor([prompt] * (2 * self.batch))
        start = time.perf_counter()
        with torch.inference_mode():
            out = self.model(input_ids=ids, use_cache=True, adapter_names=self.names)
            self.past, self.ids = out.past_key_values, self._scores(out.logits[:, -1].float())
        return time.perf_counter() - start

    def step(self):
        torch = self.torch
        ids = torch.cat([self.ids, self.ids]).reshape(-1, 1)
        start = time.perf_counter()
        with torch.inference_mode():
            out = self.model(input_ids=ids, past_key_values=self.past, use_cache=True, adapter_names=self.names)
            self.past, self.ids = out.past_key_values, self._scores(out.logits[:, -1].float())
        return time.perf_counter() - start
