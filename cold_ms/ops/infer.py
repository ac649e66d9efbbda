"""Helpers for the shape/type inference functions of the Custom ops."""


def elem(t):
    """Infer functions receive tensor types (tensor[float32]); compare their element types."""
    return t.element_type() if hasattr(t, "element_type") else t
