"""From an OpenAI request body to an engine Request: every value the server refuses is refused
here, in the API's own words, naming the field (400; 404 for an unknown model)."""
import re
import secrets
from dataclasses import dataclass
from typing import Optional, Tuple

from cold_ms import adapter_defaults
from cold_ms.config import ChoiceParams, ColdParams
from cold_ms.errors import ColdError
from cold_ms.formats.chat import chat_prompt_ids
from cold_ms.pipeline.batching import Request
from cold_ms.serving.errors import ApiError

BASE = "base"  # the base model's alias, as a `model` or an `amateur`
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
MAX_STOPS = 4  # as OpenAI

# OpenAI fields the engine does not take: each is accepted at the values that leave the answer
# unchanged and refused at any other.
NEUTRAL = {
    "n": (lambda v: v == 1, "n must be 1, got {value!r}: one choice per request"),
    "best_of": (lambda v: v == 1, "best_of must be 1, got {value!r}"),
    "presence_penalty": (lambda v: v == 0, "presence_penalty is not supported: it must be 0 or omitted"),
    "frequency_penalty": (lambda v: v == 0, "frequency_penalty is not supported: it must be 0 or omitted"),
    "logit_bias": (lambda v: not v, "logit_bias is not supported"),
    "logprobs": (lambda v: v is False, "logprobs are not returned by this server"),
    "top_logprobs": (lambda v: v == 0, "logprobs are not returned by this server"),
    "echo": (lambda v: not v, "echo is not supported"),
    "suffix": (lambda v: not v, "suffix (text insertion) is not supported"),
    "tools": (lambda v: not v, "tools are not supported: this server does no function calling"),
    "tool_choice": (lambda v: v == "none", "tool_choice is not supported: this server does no function calling"),
    "response_format": (lambda v: v == {"type": "text"}, "response_format must be {{\"type\": \"text\"}}: "
                                                          "structured output is not supported"),
    "modalities": (lambda v: v == ["text"], "only text output is supported (modalities [\"text\"])"),
}


def model_slug(name):
    """'HuggingFaceTB/SmolLM2-135M-Instruct' -> 'huggingfacetb-smollm2-135m-instruct': a stable model id."""
    return re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-.") or BASE


@dataclass(frozen=True)
class Served:
    """What a request is judged against: the loaded model and the engine's limits."""
    tokenizer: object
    base_name: str
    adapters: Tuple[str, ...]
    vocab_size: int
    max_len: int
    chat_template: Optional[str]
    cold_defaults: Optional[dict] = None  # adapter name -> its own settings (cold_ms.adapter_defaults)

    def defaults(self, expert):
        """The CoLD settings of `expert` (None: the base model) when a request does not say."""
        return (self.cold_defaults or {}).get(expert) or adapter_defaults.CONSERVATIVE

    @property
    def base_id(self):
        return model_slug(self.base_name)

    def model_ids(self):
        return [self.base_id] + list(self.adapters)

    def adapter(self, name, param):
        """The adapter `name` stands for (None = the base model); 404 for an unknown name."""
        if name in (BASE, self.base_id, self.base_name):
            return None
        if name not in self.adapters:
            raise ApiError(404, f"unknown {param} {name!r} (available: {', '.join(self.model_ids())})",
                           "model_not_found", param)
        return name


def choice_params(body, schedule="fixed"):
    """temperature, top_p, seed and beta_schedule of a body, validated. A draw without a seed
    gets a random one (as OpenAI's), so only a given seed repeats its tokens."""
    params = {"temperature": 0.0 if body.temperature is None else body.temperature,
              "top_p": 1.0 if body.top_p is None else body.top_p,
              "seed": secrets.randbelow(2 ** 63) if body.seed is None else body.seed,
              "beta_schedule": body.beta_schedule or schedule}
    for name, value in params.items():
        try:
            ChoiceParams(**{{"beta_schedule": "schedule"}.get(name, name): value})
        except ColdError as e:
            raise ApiError(400, str(e), "invalid_value", name) from None
    return params


def engine_request(served, body, cfg, chat):
    """(engine Request, stop strings) for a validated body; ApiError for a value the server refuses."""
    for name, (neutral, why) in NEUTRAL.items():
        value = getattr(body, name, None)
        if value is not None and not neutral(value):
            raise ApiError(400, why.format(value=value), "unsupported_value", name)
    expert = served.adapter(body.model, "model")
    ids = chat_ids(served, body.messages) if chat else completion_ids(served, body.prompt)
    own = served.defaults(expert)  # the server's --default-alpha/--default-beta, if given, come first
    params = {k: body_value if body_value is not None else server if server is not None else own[k]
              for k, body_value, server in (("alpha", body.alpha, cfg.default_alpha),
                                            ("beta", body.beta, cfg.default_beta))}
    for name, value in params.items():
        try:
            ColdParams(**{name: value})
        except ColdError as e:
            raise ApiError(400, str(e), "invalid_value", name) from None
    params.update(choice_params(body, own["beta_schedule"]))
    amateur = BASE if body.amateur is None and expert is not None else body.amateur
    if amateur is not None:
        amateur = served.adapter(amateur, "amateur") or BASE
    if params["beta"] == 0 or amateur == (expert or BASE):
        amateur = None  # nothing to contrast with: plain greedy
    asked = body.max_tokens if getattr(body, "max_completion_tokens", None) is None else body.max_completion_tokens
    max_tokens = _max_tokens(served, ids, asked, cfg, "messages" if chat else "prompt")
    min_tokens = body.min_tokens or 0
    if not 0 <= min_tokens <= max_tokens:
        raise ApiError(400, f"min_tokens must be in [0, max_tokens={max_tokens}], got {min_tokens}",
                       "invalid_value", "min_tokens")
    request = Request(ids, adapter=expert, amateur=amateur, max_new_tokens=max_tokens, min_tokens=min_tokens,
                      ignore_eos=bool(body.ignore_eos), **params)
    return request, _stops(body.stop)


def _max_tokens(served, ids, asked, cfg, prompt_param):
    if len(ids) >= served.max_len:
        raise ApiError(400, f"the prompt has {len(ids)} tokens; this server accepts at most {served.max_len - 1}",
                       "context_length_exceeded", prompt_param)
    room = served.max_len - len(ids)
    if asked is None:
        return min(cfg.default_max_tokens, cfg.max_tokens_limit, room)
    if asked < 1:
        raise ApiError(400, f"max_tokens must be at least 1, got {asked}", "invalid_value", "max_tokens")
    if asked > cfg.max_tokens_limit:
        raise ApiError(400, f"max_tokens {asked} is above this server's limit of {cfg.max_tokens_limit}",
                       "invalid_value", "max_tokens")
    if asked > room:
        raise ApiError(400, f"the prompt ({len(ids)} tokens) plus max_tokens ({asked}) exceeds the context of "
                            f"{served.max_len} tokens: shorten the prompt or lower max_tokens",
                       "context_length_exceeded", "max_tokens")
    return asked


def _stops(stop):
    stops = [stop] if isinstance(stop, str) else [] if stop is None else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise ApiError(422, "stop must be text or a list of texts", "invalid_type", "stop")
    if len(stops) > MAX_STOPS:
        raise ApiError(400, f"stop takes at most {MAX_STOPS} sequences, got {len(stops)}", "invalid_value", "stop")
    return tuple(_text(s, "stop") for s in stops if s)


def _text(value, param):
    """`value`, if it can be encoded (JSON allows lone surrogates, which no tokenizer takes)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, f"{param} is not valid Unicode text (it holds a lone surrogate)", "invalid_value",
                       param) from None
    return value


def chat_ids(served, messages):
    """Token ids of chat messages, through the chat template."""
    messages = chat_messages(messages)
    _need_tokenizer(served, "chat messages")
    try:
        return chat_prompt_ids(served.tokenizer, messages, served.chat_template)
    except ColdError as e:
        raise ApiError(400, str(e), "invalid_value", "messages") from None


def completion_ids(served, prompt):
    """Token ids of a completion prompt: text, token ids, or a list holding one of them."""
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str):
        if not _text(prompt, "prompt").strip():
            raise ApiError(400, "empty prompt", "invalid_value", "prompt")
        _need_tokenizer(served, "text prompts")
        return served.tokenizer.encode(prompt)
    if not isinstance(prompt, list) or not all(isinstance(t, (str, list)) or _is_id(t) for t in prompt):
        raise ApiError(422, "prompt must be text, a list of token ids, or a list holding one of them",
                       "invalid_type", "prompt")
    if not all(_is_id(t) for t in prompt):
        raise ApiError(400, "one prompt per request: send several prompts as separate requests",
                       "invalid_value", "prompt")
    if not prompt:
        raise ApiError(400, "empty prompt", "invalid_value", "prompt")
    if min(prompt) < 0 or max(prompt) >= served.vocab_size:
        raise ApiError(400, f"prompt token ids must be in [0, {served.vocab_size})", "invalid_value", "prompt")
    return list(prompt)


def _is_id(t):
    return isinstance(t, int) and not isinstance(t, bool)


def _need_tokenizer(served, what):
    if served.tokenizer is None:
        raise ApiError(400, f"this model ships no tokenizer, so {what} cannot be read: send token ids",
                       "invalid_value", "prompt")


def chat_messages(messages):
    """[{"role", "content"}] for the chat template: roles checked, text parts joined."""
    if not messages:
        raise ApiError(400, "messages must hold at least one message", "invalid_value", "messages")
    out = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if m.role in ("tool", "function") or m.tool_calls or m.tool_call_id:
            raise ApiError(400, f"{where}: tool messages and tool calls are not supported (no function calling)",
                           "unsupported_value", where)
        if m.role not in ROLES:
            raise ApiError(400, f"{where}.role: unknown role {m.role!r} (use {', '.join(ROLES)})",
                           "invalid_value", f"{where}.role")
        out.append({"role": ROLES[m.role], "content": _content(m.content, m.role, f"{where}.content")})
    return out


def _content(content, role, where):
    if isinstance(content, str):
        return _text(content, where)
    if content is None:
        if role == "assistant":  # OpenAI allows it (e.g. beside tool calls)
            return ""
        raise ApiError(400, f"{where} is required for role {role!r}", "invalid_value", where)
    if not isinstance(content, list) or not all(isinstance(p, dict) and isinstance(p.get("type"), str)
                                                for p in content):
        raise ApiError(422, f"{where} must be text or a list of {{\"type\": \"text\", \"text\": ...}} parts",
                       "invalid_type", where)
    kinds = sorted({p["type"] for p in content} - {"text"})
    if kinds:
        raise ApiError(400, f"{where}: only text parts are supported, got {', '.join(map(repr, kinds))}",
                       "unsupported_value", where)
    if not all(isinstance(p.get("text"), str) for p in content):
        raise ApiError(422, f"{where}: a text part is {{\"type\": \"text\", \"text\": <string>}}", "invalid_type",
                       where)
    return "\n".join(_text(p["text"], where) for p in content)  # vLLM's joiner for several parts
