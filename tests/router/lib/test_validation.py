"""Validation failures in the project's words, from the messages the installed msgspec really produces: when a
release words them differently, these fail (the rewording then passes the library's text on unchanged)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
import pytest

from router.lib.validation import described, field_errors, reworded


class Item(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(max_length=3)]
    count: Annotated[int, msgspec.Meta(ge=1, le=50)] | None = None
    kind: Literal["a", "b"] = "a"
    tags: Annotated[list[str], msgspec.Meta(min_length=1)] = msgspec.field(default_factory=lambda: ["t"])


def failure(body: object) -> str:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.convert(body, Item)
    return str(caught.value).split(" - at `")[0]  # litestar keeps the path apart, as ``key``


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, "'name' is required"),
        ({"name": "x", "colour": "red"}, "'colour' is not a known field"),
        ({"name": 4}, "must be a string, not an integer"),
        ({"name": "x", "count": "many"}, "must be an integer or null, not a string"),
        ({"name": "x", "count": 2.5}, "must be an integer or null, not a number"),
        ({"name": "x", "count": True}, "must be an integer or null, not true or false"),
        ({"name": "x", "count": 0}, "must be at least 1"),
        ({"name": "x", "count": 51}, "must be at most 50"),
        ({"name": "long"}, "must be at most 3 characters long"),
        ({"name": "x", "tags": []}, "must hold at least 1 items"),
        ({"name": "x", "kind": "c"}, "'c' is not one of the allowed values"),
        ([1], "must be an object, not an array"),
    ],
)
def test_msgspec_failures_are_reworded(body: object, words: str) -> None:
    assert reworded(failure(body)) == words


def test_a_message_of_an_unknown_shape_is_passed_on() -> None:
    assert reworded("something new went wrong") == "something new went wrong"


def test_the_detail_names_each_field_and_the_list_keeps_keys_and_sources() -> None:
    errors = [
        {"message": "Expected `int` >= 1", "key": "top_k", "source": "body"},
        {"message": "Object missing required field `query`", "key": "data", "source": "body"},
    ]
    assert described("Validation failed for POST /v1/query", errors) == (
        "the request is invalid: top_k: must be at least 1; 'query' is required"
    )
    assert field_errors(errors)[0] == {"message": "must be at least 1", "key": "top_k", "source": "body"}
    assert described("no document with id 'a'", None) == "no document with id 'a'"
    assert described("x", [{"key": "data", "message": "'data'"}]).endswith(
        "the request body is empty; send a JSON object"
    )
