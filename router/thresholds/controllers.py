"""Live thresholds: read, change, audit, roll back, what-if and calibration on recent traffic or a labelled outcomes
file (``/v1/thresholds``).

Changes (PUT, rollback) need the admin key; reads, evaluate and calibrate need it too when
``thresholds.protect_reads`` is set. A change is written to the versioned store first, then applied to new requests
of this replica at once (requests already decided keep their version); other replicas pick it up from the store
within ``thresholds.poll_seconds``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio
import msgspec
import numpy as np
import numpy.typing as npt
from litestar import Controller, Request, get, post, put
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException, ServiceUnavailableException, ValidationException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import JSONBody, QueryParameter

from models.bundle import ThresholdsRecord
from models.policy import Policy, Thresholds
from models.tuning import Expectation, Labels, calibrate, expected
from router.lib.auth import require_admin
from router.thresholds.live import LiveTuning, Tuning
from router.thresholds.outcomes import NoOutcomes, OutcomesScorer
from router.thresholds.schemas import (
    MIN_TRAFFIC,
    CalibrateRequest,
    CalibrationProposal,
    ExpectedMix,
    HistoryEntry,
    Proposed,
    Rollback,
    Scored,
    ThresholdsUpdate,
    ThresholdsView,
    WhatIf,
)
from router.thresholds.store import ThresholdsStoreError
from router.thresholds.traffic import RecentScores

T = TypeVar("T")


def require_reader(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    if connection.app.state.settings.thresholds.protect_reads:
        require_admin(connection, handler)


def _mix(result: Expectation) -> ExpectedMix:
    return ExpectedMix(result.mix, result.success, result.cost, result.queries, result.em)


async def _scored(
    body: Scored, traffic: RecentScores, outcomes: OutcomesScorer
) -> tuple[npt.NDArray[np.float64], Labels | None, str]:
    """The score matrix (and, for outcomes, its labels) a what-if or calibration runs on, and its description."""
    if body.source == "outcomes":
        if body.window is not None:
            raise ValidationException("window applies to source 'traffic'; use split with 'outcomes'")
        try:
            found = await outcomes.scored(body.split)
        except NoOutcomes as exc:
            raise ValidationException(str(exc)) from exc
        return found.probabilities, found.labels, found.description
    if body.split is not None:
        raise ValidationException("split applies to source 'outcomes'")
    rows = traffic.latest(body.window)
    if len(rows) < MIN_TRAFFIC:
        raise ValidationException(f"only {len(rows)} recent decisions on this replica; need at least {MIN_TRAFFIC}")
    return np.asarray(rows, dtype=np.float64), None, f"traffic (this replica's last {len(rows)} decisions)"


def _view(live: LiveTuning, traffic: RecentScores, tuning: Tuning | None = None) -> ThresholdsView:
    """The live version, or ``tuning`` (the version a write made, which a concurrent newer write may have
    superseded)."""
    tuning = tuning or live.current
    record = tuning.record
    rows = traffic.latest()
    estimate = _mix(expected(np.asarray(rows), tuning.policy)) if len(rows) >= MIN_TRAFFIC else None
    return ThresholdsView(
        record.version, record.thresholds.as_dict(), record.cost_weight, record.updated_at, record.updated_by, estimate
    )


def _who(request: Request[Any, Any, Any]) -> str:
    client = request.client.host if request.client else "unknown"
    return f"api ({client})"


async def _in_store(call: Callable[[], T]) -> T:
    """A store call off the event loop; an unreachable or broken store is a 503 naming it."""
    try:
        return await anyio.to_thread.run_sync(call)
    except ThresholdsStoreError as exc:
        raise ServiceUnavailableException(f"thresholds store: {exc}") from exc


class ThresholdsController(Controller):
    path = "/v1/thresholds"
    tags = ("thresholds",)

    @get("", guards=[require_reader], summary="The live thresholds, knob, version and the mix they produce")
    async def show(self, live: NamedDependency[LiveTuning], traffic: NamedDependency[RecentScores]) -> ThresholdsView:
        return _view(live, traffic)

    @put("", guards=[require_admin], summary="Set thresholds and knob: a new version, live at once")
    async def set(
        self,
        data: JSONBody[ThresholdsUpdate],
        live: NamedDependency[LiveTuning],
        traffic: NamedDependency[RecentScores],
        request: Request[Any, Any, Any],
    ) -> ThresholdsView:
        thresholds = Thresholds.from_mapping(msgspec.structs.asdict(data.thresholds))
        Policy(thresholds, data.cost_weight)  # the same checks a loaded record gets
        record = await _in_store(
            lambda: live.store.apply(thresholds, data.cost_weight, by=_who(request), action="set", note=data.note)
        )
        return _view(live, traffic, live.retune(record))

    @get("/history", guards=[require_reader], summary="The newest versions, newest first (the audit trail)")
    async def history(
        self, live: NamedDependency[LiveTuning], limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100
    ) -> list[HistoryEntry]:
        entries = await _in_store(lambda: live.store.history(limit))
        return [
            HistoryEntry(
                e.record.version, e.record.thresholds.as_dict(), e.record.cost_weight, e.record.updated_at,
                e.record.updated_by, e.action, e.note,
            )
            for e in entries
        ]  # fmt: skip

    @post("/rollback", status_code=200, guards=[require_admin], summary="Re-apply an earlier version as a new one")
    async def rollback(
        self,
        data: JSONBody[Rollback],
        live: NamedDependency[LiveTuning],
        traffic: NamedDependency[RecentScores],
        request: Request[Any, Any, Any],
    ) -> ThresholdsView:
        try:
            record: ThresholdsRecord = await _in_store(lambda: live.store.rollback(data.version, by=_who(request)))
        except KeyError as exc:
            raise NotFoundException(f"no thresholds version {data.version}") from exc
        return _view(live, traffic, live.retune(record))

    @post("/evaluate", status_code=200, guards=[require_reader], summary="What-if on recent traffic or outcomes")
    async def evaluate(
        self,
        data: JSONBody[Proposed],
        live: NamedDependency[LiveTuning],
        traffic: NamedDependency[RecentScores],
        outcomes: NamedDependency[OutcomesScorer],
    ) -> WhatIf:
        probabilities, labels, source = await _scored(data, traffic, outcomes)
        current = live.current
        thresholds = (
            Thresholds.from_mapping(msgspec.structs.asdict(data.thresholds))
            if data.thresholds
            else current.record.thresholds
        )
        cost_weight = current.policy.cost_weight if data.cost_weight is None else data.cost_weight
        proposed = Policy(thresholds, cost_weight, current.policy.costs)
        return WhatIf(
            source,
            _mix(expected(probabilities, current.policy, labels)),
            _mix(expected(probabilities, proposed, labels)),
            thresholds.as_dict(),
            cost_weight,
        )

    @post("/calibrate", status_code=200, guards=[require_reader], summary="Thresholds for a target mix (not applied)")
    async def calibrate(
        self,
        data: JSONBody[CalibrateRequest],
        live: NamedDependency[LiveTuning],
        traffic: NamedDependency[RecentScores],
        outcomes: NamedDependency[OutcomesScorer],
    ) -> CalibrationProposal:
        if not data.target_mix:
            raise ValidationException('target_mix is required, e.g. {"rag": 0.3, "both": 0.1}')
        probabilities, labels, source = await _scored(data, traffic, outcomes)
        try:
            proposal = await anyio.to_thread.run_sync(
                lambda: calibrate(probabilities, data.target_mix, live.current.policy, labels)
            )
        except ValueError as exc:
            raise ValidationException(str(exc)) from exc
        policy = proposal.policy
        return CalibrationProposal(
            source, policy.thresholds.as_dict(), policy.cost_weight, _mix(proposal.expectation), proposal.distance
        )
