"""OpenAI-compatible request bodies plus the CoLD fields (alpha, beta, amateur)."""
from typing import List, Optional, Union

from pydantic import BaseModel, ConfigDict, Field


class _Common(BaseModel):
    model_config = ConfigDict(extra="ignore")  # other OpenAI fields (user, logit_bias, ...) are accepted

    model: str = Field(description="an adapter name (the expert) or the base model's name")
    max_tokens: Optional[int] = Field(None, ge=1)
    stop: Optional[Union[str, List[str]]] = None
    stream: bool = False
    stream_options: Optional[dict] = None
    temperature: Optional[float] = Field(None, ge=0)
    n: Optional[int] = Field(None, ge=1)
    alpha: Optional[float] = Field(None, description="CoLD plausibility threshold, in (0, 1]")
    beta: Optional[float] = Field(None, description="CoLD contrast strength, >= 0; 0 = greedy")
    amateur: Optional[str] = Field(None, description="'base' or another loaded adapter")

    def stops(self):
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class CompletionRequest(_Common):
    prompt: Union[str, List[int]]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str


class ChatRequest(_Common):
    messages: List[ChatMessage] = Field(min_length=1)
