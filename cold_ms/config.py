"""Frozen configuration objects, passed whole to the Cells and the engine."""
import math
from dataclasses import dataclass, field
from typing import Optional, Tuple

from cold_ms.architectures import FAMILIES
from cold_ms.errors import ConfigError

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ROPE_TYPES = ("default", "linear", "llama3")


@dataclass(frozen=True)
class ModelConfig:
    """A decoder of one of cold_ms.architectures' families; names follow HF `config.json`.

    family: the declared differences from the LLaMA block; layer_windows: per layer, the
    sliding window (a query at p sees keys p - w < j <= p) or 0 for global attention;
    rope_local_theta: the rope base of sliding-window layers where it differs (Gemma 3), else 0;
    rope_scaling: (("rope_type", ...), (parameter, value), ...) of the global rope, () for none;
    rope_freq_factors: per frequency, a divisor of the rope frequencies (GGUF's rope_freqs tensor);
    query_pre_attn_scalar: attention logits scale by its -1/2 power (0: head_dim);
    final_logit_softcapping: logits = cap * tanh(logits / cap) where > 0."""
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
    family: str = "llama"
    layer_windows: Tuple[int, ...] = ()  # () = every layer global
    rope_local_theta: float = 0.0
    rope_scaling: Tuple[Tuple[str, object], ...] = ()
    rope_freq_factors: Tuple[float, ...] = ()
    query_pre_attn_scalar: float = 0.0
    final_logit_softcapping: float = 0.0

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
        if self.family not in FAMILIES:
            raise ConfigError(f"model config: unknown family {self.family!r} (known: {', '.join(FAMILIES)})")
        windows = tuple(int(w) for w in self.layer_windows) or (0,) * self.num_layers
        if len(windows) != self.num_layers or min(windows) < 0:
            raise ConfigError(f"model config: layer_windows needs one window >= 0 per layer "
                              f"({self.num_layers}), got {self.layer_windows}")
        object.__setattr__(self, "layer_windows", windows)
        kind = dict(self.rope_scaling).get("rope_type", "default")
        if kind not in ROPE_TYPES:
            raise ConfigError(f"model config: rope scaling '{kind}' is not supported (supported: "
                              f"{', '.join(ROPE_TYPES)})")
        if self.rope_freq_factors and len(self.rope_freq_factors) != self.head_dim // 2:
            raise ConfigError(f"model config: rope_freq_factors needs head_dim / 2 = {self.head_dim // 2} "
                              f"values, got {len(self.rope_freq_factors)}")
        if not self.query_pre_attn_scalar:
            object.__setattr__(self, "query_pre_attn_scalar", float(self.head_dim))

    @property
    def arch(self):
        """The family's declared differences from the LLaMA block (cold_ms.architectures.Family)."""
        return FAMILIES[self.family]

    @property
    def attn_scale(self):
        return self.query_pre_attn_scalar ** -0.5

    def layer_rope(self, layer):
        """0 where `layer` rotates with the global rope, 1 with the local one (rope_local_theta)."""
        return int(bool(self.layer_windows[layer] and self.rope_local_theta))

    @property
    def num_params(self) -> int:
        d, f, L = self.hidden_size, self.intermediate_size, self.num_layers
        qo = 2 * d * self.num_heads * self.head_dim
        kv = 2 * d * self.num_kv_heads * self.head_dim
        arch = self.arch
        norms = 2 * d * (2 if arch.sandwich_norms else 1) + (2 * self.head_dim if arch.qk_norm else 0)
        bias = (self.num_heads + 2 * self.num_kv_heads) * self.head_dim if arch.qkv_bias else 0
        per_layer = qo + kv + 3 * d * f + norms + bias
        head = 0 if self.tie_word_embeddings else self.vocab_size * d
        return self.vocab_size * d + L * per_layer + d + head

    def to_hf(self) -> dict:
        """A HF `config.json` dict that from_hf reads back to this config."""
        from cold_ms.hf_config import to_hf
        return to_hf(self)

    @classmethod
    def from_hf(cls, cfg: dict, name: str = "llama", where: str = "config.json") -> "ModelConfig":
        """Build from a HF `config.json` dict (transformers 4 and 5 spellings) read from `where`;
        every field it uses is type- and range-checked (ConfigError naming the field), and
        what cold_ms cannot run is refused (cold_ms/hf_config.py)."""
        from cold_ms.hf_config import from_hf
        return from_hf(cls, cfg, name, where)


# The float types the project computes or stores LoRA stacks in, by MindSpore's names.
FLOAT_DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class LoraLayout:
    """How adapters are stacked: `num_slots` slots of rank `rank` on `targets` modules; `dtype`
    the type the CPU layer kernels keep the stacks in (float16/bfloat16 only where it holds
    every stacked value exactly: formats/adapters.py)."""
    num_slots: int
    rank: int
    targets: Tuple[str, ...]
    dtype: str = "float32"

    def __post_init__(self):
        unknown = set(self.targets) - set(LORA_TARGETS)
        if unknown:
            raise ConfigError(f"unknown LoRA target modules {sorted(unknown)}; "
                              f"supported: {', '.join(LORA_TARGETS)}")
        if self.num_slots < 0 or (self.num_slots and self.rank <= 0):
            raise ConfigError("LoRA layout needs a positive rank for a positive slot count")
        if self.dtype not in FLOAT_DTYPES:
            raise ConfigError(f"LoRA stack dtype must be one of {', '.join(FLOAT_DTYPES)}, got {self.dtype!r}")


@dataclass(frozen=True)
class ColdParams:
    """Contrastive decoding knobs of one request: plausibility alpha, contrast beta."""
    alpha: float = 0.1
    beta: float = 0.5
    mask: str = "logit"  # "logit": s_e >= log(alpha) + max s_e; "prob": p_e >= alpha * max p_e

    def __post_init__(self):
        # `not (...)` also refuses NaN, which fails every comparison
        if not (0.0 < self._number("alpha", self.alpha) <= 1.0):
            raise ConfigError(f"alpha must be in (0, 1], got {self.alpha}")
        if not (0.0 <= self._number("beta", self.beta) < math.inf):
            raise ConfigError(f"beta must be >= 0 and finite, got {self.beta}")
        if self.mask not in ("logit", "prob"):
            raise ConfigError(f"mask must be 'logit' or 'prob', got {self.mask!r}")

    @staticmethod
    def _number(name, value):
        """float(value); a ConfigError naming the knob for a non-number (text, None, a bool)."""
        if isinstance(value, bool) or isinstance(value, (str, bytes)) or not hasattr(value, "__float__"):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        return float(value)


BETA_SCHEDULES = ("fixed", "entropy")  # see cold_ms/ops/contrastive.py: EXTRA


@dataclass(frozen=True)
class ChoiceParams:
    """How one request picks its next token beyond alpha and beta: the schedule of beta
    ('fixed', or 'entropy': beta * H(p_a) / (H(p_e) + H(p_a)) at every step), temperature
    (0: argmax; > 0: a draw over the plausible set), the top_p nucleus of that draw, and
    the seed that makes the draws repeatable (the same seed, the same tokens)."""
    schedule: str = "fixed"
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if self.schedule not in BETA_SCHEDULES:
            raise ConfigError(f"beta schedule must be one of {', '.join(BETA_SCHEDULES)}, got {self.schedule!r}")
        if not (0.0 <= ColdParams._number("temperature", self.temperature) < math.inf):
            raise ConfigError(f"temperature must be >= 0 and finite, got {self.temperature}")
        if not (0.0 < ColdParams._number("top_p", self.top_p) <= 1.0):
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2 ** 63:
            raise ConfigError(f"seed must be an integer in [0, 2^63), got {self.seed!r}")


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int = 64
    ignore_eos: bool = False
    stop_token_ids: Tuple[int, ...] = field(default_factory=tuple)

    def __post_init__(self):
        if int(self.max_new_tokens) < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
