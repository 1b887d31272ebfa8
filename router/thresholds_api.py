"""Live thresholds: read, change, audit, roll back, and what-if on recent traffic (``/v1/thresholds``).

Changes (PUT, rollback) need the admin key; reads, evaluate and calibrate need it too when
``thresholds.protect_reads`` is set. A change is written to the versioned store first, then applied to new requests
of this replica at once (requests already decided keep their version); other replicas pick it up from the store
within ``thresholds.poll_seconds``.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
import msgspec
import numpy as np
from litestar import Controller, Request, get, post, put
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException, ValidationException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import JSONBody

from models.bundle import ThresholdsRecord
from models.policy import MAX_COST_WEIGHT, Policy, Thresholds
from models.tuning import Expectation, calibrate, expected
from router import schemas
from router.auth import require_admin
from router.service import RouterService

MIN_TRAFFIC = 20
"""Fewest recent decisions a what-if or a calibration on traffic is computed from."""


def require_reader(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    if connection.app.state.settings.thresholds.protect_reads:
        require_admin(connection, handler)


class ThresholdValues(schemas.Request):
    ft: Annotated[float, msgspec.Meta(ge=0, le=1)]
    rag: Annotated[float, msgspec.Meta(ge=0, le=1)]
    both: Annotated[float, msgspec.Meta(ge=0, le=1)]


class ThresholdsUpdate(schemas.Request):
    thresholds: ThresholdValues
    cost_weight: Annotated[float, msgspec.Meta(ge=0, le=MAX_COST_WEIGHT)]
    note: str = ""


class Rollback(schemas.Request):
    version: Annotated[int, msgspec.Meta(ge=1)]


class Proposed(schemas.Request):
    thresholds: ThresholdValues | None = None
    cost_weight: Annotated[float, msgspec.Meta(ge=0, le=MAX_COST_WEIGHT)] | None = None
    window: Annotated[int, msgspec.Meta(ge=MIN_TRAFFIC)] | None = None
    """How many of the latest decisions to use (default: all kept, up to 10,000)."""


class CalibrateRequest(schemas.Request):
    target_mix: dict[str, float]
    window: Annotated[int, msgspec.Meta(ge=MIN_TRAFFIC)] | None = None


class ExpectedMix(schemas.Value, frozen=True):
    mix: dict[str, float]
    success: float
    cost: float
    queries: int


class ThresholdsView(schemas.Value, frozen=True):
    version: int
    thresholds: dict[str, float]
    cost_weight: float
    updated_at: str
    updated_by: str
    expected: ExpectedMix | None
    """On this replica's recent traffic; None before ``MIN_TRAFFIC`` decisions."""


class HistoryEntry(schemas.Value, frozen=True):
    version: int
    thresholds: dict[str, float]
    cost_weight: float
    updated_at: str
    updated_by: str
    action: str
    note: str


class WhatIf(schemas.Value, frozen=True):
    current: ExpectedMix
    proposed: ExpectedMix
    thresholds: dict[str, float]
    cost_weight: float


class CalibrationProposal(schemas.Value, frozen=True):
    thresholds: dict[str, float]
    cost_weight: float
    expected: ExpectedMix
    distance: float
    """L1 distance between the expected mix and the target."""


def _mix(result: Expectation) -> ExpectedMix:
    return ExpectedMix(result.mix, result.success, result.cost, result.queries)


def _traffic(service: RouterService, window: int | None) -> np.ndarray:
    rows = list(service.recent)[-window:] if window else list(service.recent)
    if len(rows) < MIN_TRAFFIC:
        raise ValidationException(f"only {len(rows)} recent decisions on this replica; need at least {MIN_TRAFFIC}")
    return np.asarray(rows, dtype=np.float64)


def _view(service: RouterService) -> ThresholdsView:
    record = service.tuning.record
    traffic = list(service.recent)
    estimate = _mix(expected(np.asarray(traffic), service.tuning.policy)) if len(traffic) >= MIN_TRAFFIC else None
    return ThresholdsView(
        record.version, record.thresholds.as_dict(), record.cost_weight, record.updated_at, record.updated_by, estimate
    )


def _who(request: Request[Any, Any, Any]) -> str:
    client = request.client.host if request.client else "unknown"
    return f"api ({client})"


class ThresholdsController(Controller):
    path = "/v1/thresholds"
    tags = ("thresholds",)

    @get("", guards=[require_reader], summary="The live thresholds, knob, version and the mix they produce")
    async def show(self, service: NamedDependency[RouterService]) -> ThresholdsView:
        return _view(service)

    @put("", guards=[require_admin], summary="Set thresholds and knob: a new version, live at once")
    async def set(
        self, data: JSONBody[ThresholdsUpdate], service: NamedDependency[RouterService], request: Request[Any, Any, Any]
    ) -> ThresholdsView:
        thresholds = Thresholds.from_mapping(msgspec.structs.asdict(data.thresholds))
        Policy(thresholds, data.cost_weight)  # the same checks a loaded record gets
        record = await anyio.to_thread.run_sync(
            lambda: service.thresholds_store.apply(
                thresholds, data.cost_weight, by=_who(request), action="set", note=data.note
            )
        )
        service.retune(record)
        return _view(service)

    @get("/history", guards=[require_reader], summary="Every version, newest first (the audit trail)")
    async def history(self, service: NamedDependency[RouterService]) -> list[HistoryEntry]:
        entries = await anyio.to_thread.run_sync(service.thresholds_store.history)
        return [
            HistoryEntry(
                e.record.version, e.record.thresholds.as_dict(), e.record.cost_weight, e.record.updated_at,
                e.record.updated_by, e.action, e.note,
            )
            for e in entries
        ]  # fmt: skip

    @post("/rollback", status_code=200, guards=[require_admin], summary="Re-apply an earlier version as a new one")
    async def rollback(
        self, data: JSONBody[Rollback], service: NamedDependency[RouterService], request: Request[Any, Any, Any]
    ) -> ThresholdsView:
        try:
            record: ThresholdsRecord = await anyio.to_thread.run_sync(
                lambda: service.thresholds_store.rollback(data.version, by=_who(request))
            )
        except KeyError as exc:
            raise NotFoundException(f"no thresholds version {data.version}") from exc
        service.retune(record)
        return _view(service)

    @post("/evaluate", status_code=200, guards=[require_reader], summary="What-if on recent traffic")
    async def evaluate(self, data: JSONBody[Proposed], service: NamedDependency[RouterService]) -> WhatIf:
        traffic = _traffic(service, data.window)
        current = service.tuning
        thresholds = (
            Thresholds.from_mapping(msgspec.structs.asdict(data.thresholds))
            if data.thresholds
            else current.record.thresholds
        )
        cost_weight = current.policy.cost_weight if data.cost_weight is None else data.cost_weight
        proposed = Policy(thresholds, cost_weight, current.policy.costs)
        return WhatIf(
            _mix(expected(traffic, current.policy)),
            _mix(expected(traffic, proposed)),
            thresholds.as_dict(),
            cost_weight,
        )

    @post("/calibrate", status_code=200, guards=[require_reader], summary="Thresholds for a target mix (not applied)")
    async def calibrate(
        self, data: JSONBody[CalibrateRequest], service: NamedDependency[RouterService]
    ) -> CalibrationProposal:
        traffic = _traffic(service, data.window)
        try:
            proposal = await anyio.to_thread.run_sync(
                lambda: calibrate(traffic, data.target_mix, service.tuning.policy)
            )
        except ValueError as exc:
            raise ValidationException(str(exc)) from exc
        policy = proposal.policy
        return CalibrationProposal(
            policy.thresholds.as_dict(), policy.cost_weight, _mix(proposal.expectation), proposal.distance
        )
