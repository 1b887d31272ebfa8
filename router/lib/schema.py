"""The bases of every wire type (msgspec Structs, litestar's native type): requests refuse unknown fields, responses
are frozen values. Feature packages define their own structs on these."""

from __future__ import annotations

from typing import Annotated

import msgspec

from models.policy import MAX_COST_WEIGHT

Knob = Annotated[float, msgspec.Meta(ge=0, le=MAX_COST_WEIGHT)]
"""The policy's ``cost_weight``: success probability given up per retrieval call."""


class Request(msgspec.Struct, forbid_unknown_fields=True):
    pass


class Value(msgspec.Struct, frozen=True):
    pass
