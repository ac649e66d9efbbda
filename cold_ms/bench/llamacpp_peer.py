"""The peer `bench.py e2e --peer llamacpp` compares with: llama.cpp greedy decoding through
llama-cpp-python on the same GGUF file and prompt token ids, one sequence (B=1), all cores.

Optional (`pip install -e .[peers]` builds it from the PyPI sdist; see the README for the
build flags that avoid the AMX repack crash of its default native build on AMX CPUs).
"""
import os
import time


class LlamaCppVariant:
    def __init__(self, model, max_len):
        if not str(model.source).endswith(".gguf"):
            raise SystemExit("--peer llamacpp needs a GGUF model (--model FILE.gguf, or the embedded default)")
        try:
            from llama_cpp import Llama
        except ImportError:
            raise SystemExit("--peer llamacpp needs llama-cpp-python (pip install -e .[peers]; see the README)")
        self.llm = Llama(model.source, n_ctx=max_len, n_batch=512, n_threads=os.cpu_count(), verbose=False)
        self.summary, self.base_bytes = "the GGUF as stored (llama.cpp)", os.path.getsize(model.source)

    def _next(self):
        return self.llm.sample(temp=0.0, repeat_penalty=1.0)  # greedy: the argmax of the last logits

    def prefill(self, prompt):
        start = time.perf_counter()
        self.llm.reset()
        self.llm.eval(list(prompt))
        self.token = self._next()
        return time.perf_counter() - start

    def step(self):
        start = time.perf_counter()
        self.llm.eval([self.token])
        self.token = self._next()
        return time.perf_counter() - start
