"""Wording shared by the views (tables and plots say a count the same way)."""

from __future__ import annotations


def plural(count: float, word: str) -> str:
    return f"{count:g} {word}{'' if count == 1 else 's'}"
