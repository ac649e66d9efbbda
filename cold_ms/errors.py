"""Errors a user can act on. All derive from ValueError so callers may catch either."""


class ColdError(ValueError):
    """Base class: the message names the problem and, where possible, the fix."""


class ConfigError(ColdError):
    """An invalid model, LoRA or decoding configuration."""


class CheckpointError(ColdError):
    """A missing, corrupt or mismatched checkpoint file."""


class AdapterError(ColdError):
    """An unknown adapter name or an adapter that does not fit the base model."""


class InputError(ColdError):
    """A bad prompt or request: empty, too long, or out-of-range values."""
