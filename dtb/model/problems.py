"""Collecting configuration problems, and values quoted in messages without blowing up."""

from __future__ import annotations

import reprlib
from typing import Any

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 3, 8, 8, 8
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 80, 80, 40


def short_repr(value: Any, limit: int = 200) -> str:
    """``repr(value)`` for a message, bounded in time and length: nested and long values
    are elided (``reprlib``) and the text cut at ``limit`` characters, so a huge or
    self-similar value (a YAML alias bomb) cannot make a message, or its making, huge."""
    try:
        text = _REPR.repr(value)
    except (RecursionError, ValueError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


class Problems:
    """The problems found in one configuration, one line each (``path: value -- expected``),
    collected so that a ConfigError reports them all at once."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, value: Any, expected: str) -> None:
        line = f"{path}: {short_repr(value)} -- expected {expected}"
        if line not in self.items:
            self.items.append(line)
