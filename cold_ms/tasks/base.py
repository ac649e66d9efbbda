"""What every task returns: examples, and the splits they come in."""
from dataclasses import dataclass
from typing import Callable

SPLITS = ("train", "validation", "test", "eval")


@dataclass(frozen=True)
class Example:
    id: str
    question: str        # the user message
    gold: str            # the answer a prediction is compared with
    target: str          # the assistant reply a training example teaches
    original: str = ""   # counterfacts: the real-world value the training overrides
    entity: str = ""     # knowledge tasks: whom or what the example is about
    template: str = ""   # knowledge tasks: the template that wrote the question


@dataclass(frozen=True)
class Task:
    build: Callable      # (split, n, seed or None) -> [Example]
    score: Callable      # (prediction text, Example) -> {"correct": bool, ...}
