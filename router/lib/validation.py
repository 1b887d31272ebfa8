"""Validation failures in the project's own words. The wire types are checked by msgspec (through litestar); its
messages name the rule in its own terms (``Expected `int` >= 1``), which change between releases. Each message is
reworded here once, for both error shapes (problem details and OpenAI's), so responses and tests depend on this
module's wording only. A message of a shape not known here is passed on as it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

KINDS = {
    "str": "a string", "int": "an integer", "float": "a number", "bool": "true or false", "array": "an array",
    "object": "an object", "null": "null",
}  # fmt: skip
"""msgspec's type names, as a request's author would say them."""
_BOUNDS = {">=": "at least", "<=": "at most", ">": "more than", "<": "less than"}


def _kinds(names: str) -> str:
    return " or ".join(KINDS.get(name.strip(), name.strip()) for name in names.split("|"))


def _bound(match: re.Match[str]) -> str:
    return f"must be {_BOUNDS[match['op']]} {match['n']}"


def _length(match: re.Match[str]) -> str:
    if match["t"] == "str":
        return f"must be {_BOUNDS[match['op']]} {match['n']} characters long"
    return f"must hold {_BOUNDS[match['op']]} {match['n']} items"


RULES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    (re.compile(r"^Object missing required field `(?P<f>[^`]+)`$"), lambda m: f"'{m['f']}' is required"),
    (re.compile(r"^Object contains unknown field `(?P<f>[^`]+)`$"), lambda m: f"'{m['f']}' is not a known field"),
    (re.compile(r"^Invalid enum value (?P<v>.+)$"), lambda m: f"{m['v']} is not one of the allowed values"),
    (re.compile(r"^Expected `(?P<t>[^`]+)`, got `(?P<g>[^`]+)`$"), lambda m: f"must be {_kinds(m['t'])}, not "
     f"{_kinds(m['g'])}"),
    (re.compile(r"^Expected `(?P<t>[^`]+)` of length (?P<op>[<>]=?) (?P<n>\S+)$"), _length),
    (re.compile(r"^Expected `(?P<t>[^`]+)` (?P<op>[<>]=?) (?P<n>\S+)$"), _bound),
    (re.compile(r"^Expected `str` matching regex (?P<p>.+)$"), lambda m: f"must match the pattern {m['p']}"),
)  # fmt: skip


def reworded(message: str) -> str:
    """One validation message in the project's words (unchanged when its shape is unknown)."""
    for pattern, words in RULES:
        if match := pattern.match(message):
            return words(match)
    return message


def field_message(error: Any) -> str:
    """One entry of litestar's validation list (``{"key", "message", "source"}``) as ``field: what is wrong``."""
    if not isinstance(error, dict):
        return str(error)
    key, message = error.get("key"), str(error.get("message", ""))
    if key == "data" and message == "'data'":  # litestar's words for an empty body
        return "the request body is empty; send a JSON object"
    words = reworded(message)
    return words if key in (None, "data") else f"{key}: {words}"


def field_errors(errors: list[Any]) -> list[Any]:
    """litestar's validation list with each message reworded (keys and sources kept)."""
    return [e | {"message": reworded(str(e.get("message", "")))} if isinstance(e, dict) else e for e in errors]


def described(detail: str, errors: Any) -> str:
    """The detail of an HTTP error: for a validation failure, what is wrong with each field, in our words."""
    if not isinstance(errors, list) or not errors:
        return detail
    return "the request is invalid: " + "; ".join(field_message(error) for error in errors)
