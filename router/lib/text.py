"""Checks on query text, below the HTTP layer: the request path calls them, whatever front door the text came by."""

from __future__ import annotations

import re

from router.lib.errors import InvalidQuery

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def check_text(text: str, field: str) -> None:
    """Refuses (400) text holding a control character other than tab, newline and carriage return."""
    if found := _CONTROL.search(text):
        raise InvalidQuery(
            f"{field} holds control character U+{ord(found.group()):04X} at position {found.start()}; "
            "only tab, newline and carriage return are allowed"
        )
