"""Adapters shipped in the repository (adapters/NAME), trained for the embedded SmolLM2."""
import os

from cold_ms.errors import InputError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED_DIR = os.path.join(ROOT, "adapters")
DEFAULT_EXPERT = "math"
# The built-in example of `scripts/infer.py` with no prompt: a gsm_symbolic-style problem.
EXAMPLE_PROBLEM = ("A baker makes 4 trays of 12 muffins and sells 29 of them. How many muffins are left? "
                   "Solve step by step and end with '#### <number>'.")
EXAMPLE_TOKENS = 256  # its worked answers run to ~90 tokens (math's mean), 200+ for a long one


def shipped_adapters():
    """{name: directory} of the shipped PEFT adapters."""
    if not os.path.isdir(SHIPPED_DIR):
        return {}
    return {n: os.path.join(SHIPPED_DIR, n) for n in sorted(os.listdir(SHIPPED_DIR))
            if os.path.isfile(os.path.join(SHIPPED_DIR, n, "adapter_config.json"))}


def resolve_adapter(spec):
    """(name, directory) from NAME=DIR or the NAME of a shipped adapter."""
    name, sep, path = spec.partition("=")
    if sep:
        if not name or not path:
            raise InputError(f"--adapter expects NAME=DIR or a shipped adapter name, got {spec!r}")
        return name, path
    shipped = shipped_adapters()
    if spec not in shipped:
        raise InputError(f"unknown adapter '{spec}': give NAME=DIR, or one of the shipped adapters "
                         f"({', '.join(shipped) or 'none installed'})")
    return spec, shipped[spec]
