"""Wire types of ``/v1/thresholds``: the live version and its history, changes, what-if and calibration."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from router.lib import schema as schemas

MIN_TRAFFIC = 20
"""Fewest recent decisions a what-if or a calibration on traffic is computed from."""
Source = Literal["traffic", "outcomes"]


class ThresholdValues(schemas.Request):
    ft: Annotated[float, msgspec.Meta(ge=0, le=1)]
    rag: Annotated[float, msgspec.Meta(ge=0, le=1)]
    both: Annotated[float, msgspec.Meta(ge=0, le=1)]


class ThresholdsUpdate(schemas.Request):
    thresholds: ThresholdValues
    cost_weight: schemas.Knob
    note: Annotated[str, msgspec.Meta(max_length=500)] = ""


class Rollback(schemas.Request):
    version: Annotated[int, msgspec.Meta(ge=1)]


class Scored(schemas.Request):
    """Which scored queries to use: this replica's recent decisions, or the configured labelled outcomes file."""

    source: Source = "traffic"
    window: Annotated[int, msgspec.Meta(ge=MIN_TRAFFIC)] | None = None
    """traffic: how many of the latest decisions (default: all kept, up to 10,000)."""
    split: str | None = None
    """outcomes: rows of this split (default: thresholds.outcomes_split)."""


class Proposed(Scored):
    thresholds: ThresholdValues | None = None
    cost_weight: schemas.Knob | None = None


class CalibrateRequest(Scored):
    target_mix: dict[str, float] = msgspec.field(default_factory=dict)


class ExpectedMix(schemas.Value, frozen=True):
    mix: dict[str, float]
    success: float
    """Mean calibrated success probability of the routes taken (an estimate)."""
    cost: float
    """Mean retrieval calls: measured, on outcomes; from the route costs, on traffic."""
    queries: int
    em: float | None
    """Measured exact match of the routes taken, on outcomes; None on traffic."""


class VersionFields(schemas.Value, frozen=True):
    version: int
    thresholds: dict[str, float]
    cost_weight: float
    updated_at: str
    updated_by: str


class ThresholdsView(VersionFields, frozen=True):
    expected: ExpectedMix | None
    """On this replica's recent traffic; None before ``MIN_TRAFFIC`` decisions."""


class HistoryEntry(VersionFields, frozen=True):
    action: str
    note: str


class WhatIf(schemas.Value, frozen=True):
    source: str
    current: ExpectedMix
    proposed: ExpectedMix
    thresholds: dict[str, float]
    cost_weight: float


class CalibrationProposal(schemas.Value, frozen=True):
    source: str
    thresholds: dict[str, float]
    cost_weight: float
    expected: ExpectedMix
    distance: float
    """L1 distance between the expected mix and the target."""
