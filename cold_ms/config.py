"""Frozen configuration objects, passed whole to the Cells and the engine."""
from dataclasses import dataclass, field
from typing import Optional, Tuple

from cold_ms.errors import ConfigError

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
SUPPORTED_MODEL_TYPES = ("llama", "mistral")


@dataclass(frozen=True)
class ModelConfig:
    """LLaMA-family architecture; names follow HF `config.json`."""
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    bos_token_id: Optional[int] = None
    eos_token_ids: Tuple[int, ...] = ()
    head_dim: int = 0  # 0: hidden_size // num_heads
    name: str = "llama"

    def __post_init__(self):
        for key in ("vocab_size", "hidden_size", "intermediate_size", "num_layers",
                    "num_heads", "num_kv_heads", "max_position_embeddings"):
            if int(getattr(self, key)) <= 0:
                raise ConfigError(f"model config: {key} must be positive, got {getattr(self, key)}")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"model config: num_heads={self.num_heads} is not a multiple of "
                              f"num_kv_heads={self.num_kv_heads}")
        if not self.head_dim:
            if self.hidden_size % self.num_heads:
                raise ConfigError(f"model config: hidden_size={self.hidden_size} is not divisible "
                                  f"by num_heads={self.num_heads}")
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_heads)
        if self.head_dim % 2:
            raise ConfigError(f"model config: head_dim={self.head_dim} must be even for rotary embeddings")
        object.__setattr__(self, "eos_token_ids", tuple(int(e) for e in self.eos_token_ids))

    @property
    def num_params(self) -> int:
        d, f, L = self.hidden_size, self.intermediate_size, self.num_layers
        qo = 2 * d * self.num_heads * self.head_dim
        kv = 2 * d * self.num_kv_heads * self.head_dim
        per_layer = qo + kv + 3 * d * f + 2 * d
        head = 0 if self.tie_word_embeddings else self.vocab_size * d
        return self.vocab_size * d + L * per_layer + d + head

    def to_hf(self) -> dict:
        """A HF `config.json` dict that from_hf reads back to this config."""
        return {"model_type": "llama", "architectures": ["LlamaForCausalLM"],
                "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
                "intermediate_size": self.intermediate_size, "num_hidden_layers": self.num_layers,
                "num_attention_heads": self.num_heads, "num_key_value_heads": self.num_kv_heads,
                "head_dim": self.head_dim, "rms_norm_eps": self.rms_norm_eps, "rope_theta": self.rope_theta,
                "max_position_embeddings": self.max_position_embeddings,
                "tie_word_embeddings": self.tie_word_embeddings, "bos_token_id": self.bos_token_id,
                "eos_token_id": list(self.eos_token_ids), "torch_dtype": "float32"}

    @classmethod
    def from_hf(cls, cfg: dict, name: str = "llama") -> "ModelConfig":
        """Build from a HF `config.json` dict (transformers 4 and 5 spellings)."""
        model_type = cfg.get("model_type", "llama")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ConfigError(f"model_type '{model_type}' is not supported "
                              f"(supported: {', '.join(SUPPORTED_MODEL_TYPES)})")
        if cfg.get("sliding_window") not in (None, 0):
            raise ConfigError("sliding-window attention is not supported")
        rope_params = cfg.get("rope_parameters") or {}
        scaling = cfg.get("rope_scaling") or {}
        kind = scaling.get("rope_type", scaling.get("type", rope_params.get("rope_type", "default")))
        if kind not in (None, "default"):
            raise ConfigError(f"rope scaling '{kind}' is not supported")
        if cfg.get("attention_bias") or cfg.get("mlp_bias"):
            raise ConfigError("attention/MLP biases are not supported (LLaMA has none)")
        missing = [k for k in ("vocab_size", "hidden_size", "intermediate_size",
                               "num_hidden_layers", "num_attention_heads") if k not in cfg]
        if missing:
            raise ConfigError(f"config.json is missing {', '.join(missing)}")
        eos = cfg.get("eos_token_id")
        eos = () if eos is None else (tuple(eos) if isinstance(eos, list) else (eos,))
        heads = cfg["num_attention_heads"]
        return cls(
            vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"],
            intermediate_size=cfg["intermediate_size"], num_layers=cfg["num_hidden_layers"],
            num_heads=heads, num_kv_heads=cfg.get("num_key_value_heads") or heads,
            rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            rope_theta=float(rope_params.get("rope_theta", cfg.get("rope_theta", 10000.0))),
            max_position_embeddings=cfg.get("max_position_embeddings", 2048),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            bos_token_id=cfg.get("bos_token_id"), eos_token_ids=eos,
            head_dim=cfg.get("head_dim") or 0, name=name)


@dataclass(frozen=True)
class LoraLayout:
    """How adapters are stacked: `num_slots` slots of rank `rank` on `targets` modules."""
    num_slots: int
    rank: int
    targets: Tuple[str, ...]

    def __post_init__(self):
        unknown = set(self.targets) - set(LORA_TARGETS)
        if unknown:
            raise ConfigError(f"unknown LoRA target modules {sorted(unknown)}; "
                              f"supported: {', '.join(LORA_TARGETS)}")
        if self.num_slots < 0 or (self.num_slots and self.rank <= 0):
            raise ConfigError("LoRA layout needs a positive rank for a positive slot count")


@dataclass(frozen=True)
class ColdParams:
    """Contrastive decoding knobs of one request: plausibility alpha, contrast beta."""
    alpha: float = 0.1
    beta: float = 0.5
    mask: str = "logit"  # "logit": s_e >= log(alpha) + max s_e; "prob": p_e >= alpha * max p_e

    def __post_init__(self):
        if not (0.0 < float(self.alpha) <= 1.0):
            raise ConfigError(f"alpha must be in (0, 1], got {self.alpha}")
        if not float(self.beta) >= 0.0:
            raise ConfigError(f"beta must be >= 0, got {self.beta}")
        if self.mask not in ("logit", "prob"):
            raise ConfigError(f"mask must be 'logit' or 'prob', got {self.mask!r}")


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int = 64
    ignore_eos: bool = False
    stop_token_ids: Tuple[int, ...] = field(default_factory=tuple)

    def __post_init__(self):
        if int(self.max_new_tokens) < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
