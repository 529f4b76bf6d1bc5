"""Parsing of the repeatable and comma-separated command-line values shared by the verbs."""
from __future__ import annotations

from typing import Sequence


def split_list(value: str) -> list[str]:
    """``"a, b,,c"`` as ``["a", "b", "c"]``."""
    return [v.strip() for v in value.split(",") if v.strip()]


def key_values(items: Sequence[str], flag: str = "--set") -> dict[str, str]:
    """``["k=v", ...]`` (a repeatable ``flag``) as a dict; an item without ``=`` or key is an error."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out
