"""CoLD as a MindFormers pipeline task: mindformers.pipeline(task="cold_text_generation", ...).

    pipe = mindformers.pipeline(task="cold_text_generation", model=ColdModel.from_pretrained(path),
                                adapter="math")   # alpha, beta: the adapter's cold_config.json
    pipe("Question ...", max_new_tokens=64)   # -> [{"text_generation_text": ["Question ... answer"]}]

`model` may be a ColdModel, a cold_ms LoadedModel, a model directory (HF config.json, or
one written by scripts/convert.py), or a model file (.gguf, MindFormers .yaml). `adapter`
and `amateur` name one of the model's adapters, a shipped one or NAME=DIR (loaded on
top of the model's; `adapters=[...]` loads more); a call may choose among those. Each
route of mindformers.pipeline is served: objects and files through its task table
(SUPPORT_PIPELINES) and registries, directories through its PIPELINE_REGISTRY.
`register()` runs when mindformers is imported (see cold_ms/__init__.py), never before.
"""
import copy
import logging
import os
import sys

from cold_ms.errors import AdapterError, ConfigError, InputError
from cold_ms.formats.adapters import BASE, AdapterRegistry, load_peft_adapter
from cold_ms.pipeline.batching import Request
from cold_ms.formats.model import LoadedModel, load_model
from cold_ms.formats.shipped import resolve_adapter, shipped_adapters

TASK = "cold_text_generation"
PIPELINE_YAML = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cold_text_generation.yaml")


class ColdConfig:
    """The config object MindFormers' builders pass around for a cold_ms model."""
    _commit_hash = None
    tokenizer_class = None

    def __init__(self, path=None, adapters=(), **_):
        self.path, self.adapters = path, tuple(adapters or ())

    def to_dict(self):
        return {"path": self.path, "adapters": list(self.adapters)}


class ColdModel:
    """A loaded base model and its adapters, as MindFormers pipelines receive a model."""

    def __init__(self, config=None, path=None, adapters=None, loaded=None, **_):
        self.config = config if config is not None else ColdConfig(path, adapters)
        path = path or getattr(self.config, "path", None)
        specs = adapters if adapters is not None else getattr(self.config, "adapters", ())
        self.loaded = loaded or load_model(path)
        pairs = [resolve_adapter(s) for s in specs]
        if not pairs and path is None and loaded is None:
            pairs = list(shipped_adapters().items())  # the embedded model's experts
        self.adapters = AdapterRegistry(list(self.loaded.builtin_adapters) +
                                        [load_peft_adapter(p, n, self.loaded.config) for n, p in pairs])

    @classmethod
    def from_pretrained(cls, path=None, adapters=None, config=None, **_):
        """MindFormers' loading convention; hub arguments it adds are ignored."""
        if config is not None and not isinstance(config, ColdConfig):
            config = None  # a MindFormers AutoConfig of the directory: cold_ms reads the files itself
        return cls(config=config, path=path, adapters=adapters)

    def with_adapters(self, specs):
        """This model with the adapters `specs` names (NAME, a shipped NAME or NAME=DIR) loaded
        too: itself when all are loaded already, else a copy sharing the base weights."""
        for spec in specs:
            if not isinstance(spec, str):
                raise InputError(f"{TASK}: an adapter is named by a string (NAME or NAME=DIR), got {spec!r}")
        new, names = [], set(self.adapters.names)
        for spec in dict.fromkeys(specs):  # each once, in order
            if spec == BASE or spec in names:
                continue
            try:
                new.append(resolve_adapter(spec))
                names.add(new[-1][0])
            except InputError:
                loaded, shipped = ", ".join(self.adapters.names) or "none", ", ".join(shipped_adapters()) or "none"
                raise AdapterError(f"{TASK}: unknown adapter '{spec}' (loaded: {loaded}; shipped: {shipped}; "
                                   f"or give NAME=DIR)") from None
        if not new:
            return self
        clone = copy.copy(self)
        clone.adapters = AdapterRegistry(self.adapters.adapters + [
            load_peft_adapter(path, name, self.loaded.config) for name, path in new])
        return clone

    def eval(self):
        return self

    def can_generate(self):
        """False: generation runs in the cold_text_generation pipeline, not MindFormers' generate()."""
        return False


class _MindFormersTokenizer:
    """A MindFormers/HF-style tokenizer (encode(add_special_tokens=...), decode) seen through
    cold_ms's tokenizer interface."""

    def __init__(self, tok):
        self.tok = tok
        self.bos_id = getattr(tok, "bos_token_id", None)
        eos = getattr(tok, "eos_token_id", None)
        self.eos_ids = () if eos is None else (eos,)
        self.add_bos = True
        self.vocab_size = getattr(tok, "vocab_size", 0)
        self.chat_template = getattr(tok, "chat_template", None)

    def encode(self, text, add_bos=None):
        return list(self.tok.encode(text, add_special_tokens=self.add_bos if add_bos is None else add_bos))

    def decode(self, ids):
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=True)

    def token(self, token_id):
        return self.tok.convert_ids_to_tokens(int(token_id))


def as_cold_model(model):
    if isinstance(model, ColdModel):
        return model
    if isinstance(model, LoadedModel):
        return ColdModel(loaded=model, adapters=())
    if isinstance(model, str):
        return ColdModel(path=model)
    raise InputError(f"{TASK}: model must be a cold_ms ColdModel or LoadedModel, a model directory or "
                     f"a .gguf/.yaml file, got {type(model).__name__}")


class ColdTextGenerationPipeline:
    """MindFormers-style text generation with CoLD: greedy (do_sample=False) or contrastive."""

    def __init__(self, model, tokenizer=None, adapter=None, amateur="base", alpha=None, beta=None, adapters=(),
                 mode="graph", lora_backend="custom", chat=False, weights="auto", activations="int16", kv_dtype="float32",
                 **kwargs):
        for key in ("image_processor", "audio_processor", "feature_extractor", "task", "framework"):
            kwargs.pop(key, None)  # what mindformers.pipeline passes to every task
        if isinstance(adapters, str) or not isinstance(adapters, (list, tuple)):
            raise InputError(f"{TASK}: adapters must be a list of NAME or NAME=DIR strings, got {adapters!r}")
        # expert and amateur may name adapters the model does not hold yet (a shipped NAME, or NAME=DIR)
        self.model = as_cold_model(model).with_adapters([*adapters, *(s for s in (adapter, amateur) if s)])
        adapter, amateur = (s.partition("=")[0] if isinstance(s, str) else s for s in (adapter, amateur))
        tok = tokenizer if tokenizer is not None else self.model.loaded.tokenizer
        if tok is None:
            raise ConfigError(f"{TASK}: the model has no tokenizer; pass tokenizer=")
        self.tokenizer = tok if hasattr(tok, "eos_ids") else _MindFormersTokenizer(tok)
        self.chat = chat
        self.options = dict(mode=mode, lora_backend=lora_backend, weights=weights, activations=activations,
                            kv_dtype=kv_dtype)
        self.defaults = self._check(dict(adapter=adapter, amateur=amateur, alpha=alpha, beta=beta, **kwargs))
        self._engines = {}

    def _check(self, params):
        """Validated generation parameters (InputError naming the bad one)."""
        from cold_ms.config import ColdParams
        unknown = set(params) - {"adapter", "amateur", "alpha", "beta", "max_new_tokens", "max_length",
                                 "do_sample", "top_k", "top_p", "batch_size"}
        if unknown:
            raise InputError(f"{TASK}: unknown arguments {sorted(unknown)}")
        if params.get("do_sample"):
            raise InputError(f"{TASK}: CoLD decodes deterministically; do_sample must be False")
        ColdParams(*(0.1 if params.get(k) is None else params[k] for k in ("alpha", "beta")))  # None: the adapter's
        for name in ("adapter", "amateur"):
            if params.get(name) not in (None, "base"):
                self.model.adapters.slot(params[name])
        return params

    def _engine(self, slots, contrastive, max_len):
        from cold_ms.pipeline.engine import Engine
        key = (slots, contrastive, max_len)
        if key not in self._engines:
            self._engines[key] = Engine(self.model.loaded, self.model.adapters, slots=slots, max_len=max_len,
                                        contrastive=contrastive, **self.options)
        return self._engines[key]

    def generate_ids(self, prompts, **kwargs):
        """Generated ids for prompt id lists, with this call's parameters over the defaults."""
        p = self._check({**self.defaults, **kwargs})
        longest = max(len(x) for x in prompts)
        new = p.get("max_new_tokens") or (p["max_length"] - longest if p.get("max_length") else 64)
        if new < 1:
            raise InputError(f"{TASK}: max_length {p.get('max_length')} leaves no room after a {longest}-token prompt")
        adapter = p.get("adapter")
        amateur = None if adapter is None or p.get("beta") == 0 else p.get("amateur", "base")
        max_len = min(self.model.loaded.config.max_position_embeddings, -(-(longest + new) // 64) * 64)
        engine = self._engine(len(prompts), amateur is not None, max_len)
        return [r.token_ids for r in engine.generate(
            [Request(ids, adapter=adapter, amateur=amateur, alpha=p.get("alpha"), beta=p.get("beta"),
                     max_new_tokens=new) for ids in prompts])]  # alpha, beta None: the adapter's own

    def __call__(self, inputs, **kwargs):
        from cold_ms.pipeline.prompts import text_prompt_ids
        texts = [inputs] if isinstance(inputs, str) else list(inputs) if isinstance(inputs, (list, tuple)) else None
        if not texts or not all(isinstance(t, str) for t in texts):
            raise InputError(f"{TASK}: inputs must be a string or a list of strings")
        prompts = [text_prompt_ids(self.tokenizer, t, self.chat) for t in texts]
        outputs = self.generate_ids(prompts, **kwargs)
        # MindFormers' text_generation returns the decoded prompt + continuation; with chat the prompt
        # is the user's text, not the template around it
        return [{"text_generation_text": [t + "\n" + self.tokenizer.decode(o) if self.chat else
                                          self.tokenizer.decode(p + o) for t, p, o in zip(texts, prompts, outputs)]}]


class _AnyModelName(dict):
    """SUPPORT_PIPELINES entry of the task: a model *file* is a valid model name, whose
    pipeline config builds a ColdModel from it; objects use the 'common' config."""

    class _Names:
        def __contains__(self, name):
            return isinstance(name, str) and (name == "common" or os.path.isfile(name))

        def __repr__(self):  # MindFormers names the accepted models by this in its KeyError
            return "an existing model directory, .gguf or .yaml file"

    def keys(self):
        return self._Names()

    def get(self, name, default=None):
        """A YAML path (MindFormerConfig only reads files): ours, or one naming the model file."""
        if name == "common":
            return PIPELINE_YAML
        import hashlib
        import yaml
        from cold_ms.runtime import cache_dir
        path = os.path.abspath(name)
        target = os.path.join(cache_dir("mindformers"), hashlib.sha256(path.encode()).hexdigest()[:16] + ".yaml")
        with open(target, "w", encoding="utf-8") as f:
            yaml.safe_dump({"model": {"arch": {"type": "ColdModel"},
                                      "model_config": {"type": "ColdConfig", "path": path}}, "processor": {}}, f)
        return target


def _mindformers_logs_to_stderr():
    """MindFormers logs to stdout, where its warnings (its optional modules missing, the config
    sections this task leaves empty) mix with the program's own output: its terminal handler
    moves to stderr and keeps errors only; its log files (./output/log or $LOG_MF_PATH) keep all."""
    from mindformers.tools.logger import get_logger
    for handler in get_logger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setStream(sys.stderr)
            handler.setLevel(logging.ERROR)


def register():
    """Make the task known to mindformers.pipeline (idempotent)."""
    import importlib
    mf_pipeline = importlib.import_module("mindformers.pipeline.pipeline")  # the module, not the function
    from mindformers.pipeline.registry_constant import NO_TOKENIZER_TASKS, PIPELINE_REGISTRY
    from mindformers.tools.register import MindFormerModuleType, MindFormerRegister
    if TASK in mf_pipeline.SUPPORT_PIPELINES:
        return
    _mindformers_logs_to_stderr()
    MindFormerRegister.register(MindFormerModuleType.PIPELINE, alias=TASK)(ColdTextGenerationPipeline)
    MindFormerRegister.register(MindFormerModuleType.MODELS, alias="ColdModel")(ColdModel)
    MindFormerRegister.register(MindFormerModuleType.CONFIG, alias="ColdConfig")(ColdConfig)
    mf_pipeline.SUPPORT_PIPELINES[TASK] = _AnyModelName()
    PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=ColdTextGenerationPipeline, ms_model=(ColdModel,))
    NO_TOKENIZER_TASKS.add(TASK)  # the model brings its own tokenizer unless one is passed
