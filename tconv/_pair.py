"""Argument normalisation shared by the functional wrappers."""
from collections.abc import Sequence


def ntuple(value, n, name):
    """An int or a sequence of ints as a list (an int repeated n times); wrong lengths go through
    so the op reports them."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a sequence of {n} ints, got {value!r}")
    if isinstance(value, int):
        return [value] * n
    if isinstance(value, Sequence) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return list(value)
    try:  # SymInt and 0-d integer tensors under torch.compile
        return [int(value)] * n if not isinstance(value, Sequence) else [int(v) for v in value]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an int or a sequence of {n} ints, got {value!r}") from None


def pair(value, name):
    """An int or a sequence of ints as a list; wrong lengths go through so the op reports them."""
    return ntuple(value, 2, name)
