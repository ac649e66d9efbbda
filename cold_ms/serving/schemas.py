"""The OpenAI request bodies this server reads, plus the CoLD fields (alpha, beta, amateur).

Shapes and types are declared here (a violation is a 422); values are judged in
serving/requests.py (a 400), so each rule has one home. A field that may take several
shapes is `Any` here and read there, so its refusal names the field, not pydantic's union. A field OpenAI does not define is
refused, as OpenAI refuses it: a misspelt "betta" must not be silently ignored.
"""
from typing import Any, Dict, List, Optional

from pydantic import BaseModel, ConfigDict, Field

_STRICT = ConfigDict(extra="forbid")


class StreamOptions(BaseModel):
    model_config = _STRICT
    include_usage: Optional[bool] = None


class _Common(BaseModel):
    model_config = _STRICT

    model: str = Field(description="an adapter name (the expert) or the base model's id (see GET /v1/models)")
    max_tokens: Optional[int] = None
    stop: Any = Field(None, description="text, or a list of up to 4 texts")
    stream: Optional[bool] = None
    stream_options: Optional[StreamOptions] = None
    alpha: Optional[float] = Field(None, description="CoLD plausibility threshold, in (0, 1]")
    beta: Optional[float] = Field(None, description="CoLD contrast strength, >= 0; 0 = greedy")
    amateur: Optional[str] = Field(None, description="'base' or another loaded adapter")
    beta_schedule: Optional[str] = Field(None, description="'fixed' (default) or 'entropy': beta * H(p_a) / "
                                                           "(H(p_e) + H(p_a)) at every step")
    temperature: Optional[float] = Field(None, description="0 or omitted: greedy CoLD; > 0: a draw over the plausible set")
    top_p: Optional[float] = None
    seed: Optional[int] = Field(None, description="the same seed gives the same tokens")
    # vLLM's extensions, which benchmarks send for fixed-length outputs
    ignore_eos: Optional[bool] = Field(None, description="true: the end-of-sequence token does not stop the request")
    min_tokens: Optional[int] = Field(None, description="EOS, stop ids and stop strings do not stop the request "
                                                        "before this many generated tokens")
    # OpenAI fields that leave the answer unchanged at their neutral values (see requests.py)
    n: Optional[int] = None
    presence_penalty: Optional[float] = None
    frequency_penalty: Optional[float] = None
    logit_bias: Optional[Dict[str, float]] = None
    user: Optional[str] = None


class CompletionRequest(_Common):
    prompt: Any = Field(description="text, token ids, or a list holding one of them")
    best_of: Optional[int] = None
    echo: Optional[bool] = None
    logprobs: Optional[int] = None
    suffix: Optional[str] = None


class ChatMessage(BaseModel):
    model_config = _STRICT
    role: str
    content: Any = Field(None, description="text, or a list of {'type': 'text', 'text': ...} parts")
    name: Optional[str] = None
    tool_calls: Optional[List[Any]] = None
    tool_call_id: Optional[str] = None


class ChatRequest(_Common):
    messages: List[ChatMessage]
    max_completion_tokens: Optional[int] = None
    logprobs: Optional[bool] = None
    top_logprobs: Optional[int] = None
    response_format: Optional[Dict[str, Any]] = None
    tools: Optional[List[Any]] = None
    tool_choice: Any = None
    parallel_tool_calls: Optional[bool] = None
    modalities: Optional[List[str]] = None
    metadata: Optional[Dict[str, Any]] = None
    store: Optional[bool] = None
    service_tier: Optional[str] = None


class LoadLoraRequest(BaseModel):
    model_config = _STRICT
    lora_name: str = Field(description="the name requests will give as `model` or `amateur`")
    lora_path: str = Field(description="a PEFT adapter directory inside the server's --adapters-dir "
                                       "(absolute, or relative to it)")


class UnloadLoraRequest(BaseModel):
    model_config = _STRICT
    lora_name: str
    lora_int_id: Optional[int] = Field(None, description="vLLM's; ignored")
