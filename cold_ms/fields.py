"""Typed reads of a configuration file's fields, for the one place each format reads them.

A loader wraps the mapping it parsed (HF config.json, PEFT adapter_config.json, GGUF
metadata, a MindFormers model_config) in Fields and reads every value through it, so a
wrong type or range is refused once, as a ConfigError naming the file and the field,
instead of surfacing later as an AttributeError or ValueError deep in the loader.
A field that is absent or null takes its default; without a default it is required.
"""
import math
from numbers import Integral, Real

from cold_ms.errors import ConfigError

REQUIRED = object()


def _shown(value):
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    if isinstance(value, str):
        try:
            float(value)
            return (f"the string {text} (write it as a number, without quotes; YAML reads 1e-5 as text, "
                    f"1.0e-5 as a number)")
        except ValueError:
            return f"the string {text}"
    return f"{text} ({type(value).__name__})"


def _kind(doc):
    return {list: "a list", str: "a string"}.get(type(doc), f"a {type(doc).__name__}")


class Fields:
    """The fields of one mapping read from `where` (a file path, or 'path: section')."""

    def __init__(self, doc, where, what="a JSON object"):
        if not isinstance(doc, dict):
            raise ConfigError(f"{where}: expected {what} of named fields, got {_kind(doc)}")
        self.doc, self.where = doc, where

    def refuse(self, message):
        raise ConfigError(f"{self.where}: {message}")

    def _value(self, key, default):
        value = self.doc.get(key)
        if value is None and default is REQUIRED:
            self.refuse(f"'{key}' is missing")
        return value

    def _wrong(self, key, want, value):
        self.refuse(f"'{key}' must be {want}, got {_shown(value)}")

    def int(self, key, default=REQUIRED, minimum=1):
        value = self._value(key, default)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
            self._wrong(key, "a positive integer" if minimum == 1 else f"an integer >= {minimum}", value)
        return int(value)

    def number(self, key, default=REQUIRED):
        """A finite number > 0 (epsilons, rope bases, LoRA alphas)."""
        value = self._value(key, default)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value <= 0:
            self._wrong(key, "a finite number > 0", value)
        return float(value)

    def flag(self, key, default=False):
        value = self._value(key, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            self._wrong(key, "true or false", value)
        return value

    def text(self, key, default=REQUIRED):
        value = self._value(key, default)
        if value is None:
            return default
        if not isinstance(value, str):
            self._wrong(key, "a string", value)
        return value

    def token_ids(self, key):
        """A token id or a list of them (HF's eos_token_id), as a tuple; () when absent."""
        value = self.doc.get(key)
        ids = [] if value is None else value if isinstance(value, list) else [value]
        if any(isinstance(i, bool) or not isinstance(i, Integral) or i < 0 for i in ids):
            self._wrong(key, "a token id or a list of token ids (integers >= 0)", value)
        return tuple(int(i) for i in ids)

    def section(self, key):
        """The nested mapping `key` as Fields (empty when absent)."""
        value = self.doc.get(key)
        if value is not None and not isinstance(value, dict):
            self._wrong(key, "a mapping of named fields", value)
        return Fields(value or {}, f"{self.where}: '{key}'")

    def empty(self, key):
        """Whether `key` is absent, null, or an empty list/mapping."""
        return self.doc.get(key) in (None, [], {})

    def build(self, factory, **kwargs):
        """factory(**kwargs), with a ConfigError it raises (a relation between fields) naming this file."""
        try:
            return factory(**kwargs)
        except ConfigError as e:
            raise ConfigError(f"{self.where}: {e}") from None
