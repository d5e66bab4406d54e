"""Exceptions shared by every vanotebook service.

Every error about bad input names the argument, what was expected and what
came, so a notebook user can fix the call without reading the source.
"""

from __future__ import annotations

from typing import Any

__all__ = ["VanotebookInputError", "check_choice", "check_positive", "describe"]


class VanotebookInputError(ValueError):
    """Bad input to a vanotebook function.

    A subclass of `ValueError`, so ``except ValueError`` still catches it.

    Parameters
    ----------
    argument : str
        The name of the offending argument.
    expected : str
        What the function accepts, in words.
    got : object
        What came instead; it is described, not printed whole.
    """

    def __init__(self, argument: str, expected: str, got: Any) -> None:
        self.argument = argument
        self.expected = expected
        self.got = got
        msg = f"{argument}: expected {expected}, got {describe(got)}"
        super().__init__(msg)


def describe(value: Any, limit: int = 80) -> str:
    """A short description of ``value`` for error messages (type and a clipped repr)."""
    shape = getattr(value, "shape", None)
    if shape is not None and not isinstance(value, str | bytes):
        return f"{type(value).__name__} with shape {tuple(shape)}"
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(value).__name__} {text}"


def check_choice(argument: str, value: Any, choices: tuple[Any, ...]) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise naming them."""
    if value not in choices:
        raise VanotebookInputError(argument, f"one of {choices}", value)
    return value


def check_positive(argument: str, value: Any, *, integer: bool = False) -> Any:
    """Return ``value`` if it is a positive number (an integer if asked), else raise."""
    kind = "a positive integer" if integer else "a positive number"
    try:
        ok = value > 0 and (not integer or int(value) == value)
    except TypeError:
        ok = False
    if isinstance(value, bool) or not ok:
        raise VanotebookInputError(argument, kind, value)
    return int(value) if integer else value
