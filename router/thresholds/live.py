"""The live thresholds of this replica: one :class:`Tuning` value, swapped whole, so that a request decides and
reports with the same version even when the thresholds change under it.

A change made through this replica is applied at once (:meth:`LiveTuning.retune`); a version written through
another replica is picked up by the poll (:meth:`LiveTuning.refresh`, every ``thresholds.poll_seconds``).
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from models.bundle import Bundle, ThresholdsRecord
from models.policy import Policy
from router.thresholds.store import ThresholdsStore, ThresholdsStoreError

log = structlog.get_logger("router.thresholds.live")


@dataclass(frozen=True)
class Tuning:
    """The live thresholds record and the policy built from it."""

    record: ThresholdsRecord
    policy: Policy


class LiveTuning:
    """The live :class:`Tuning` of one bundle, backed by the versioned store every replica shares."""

    def __init__(self, bundle: Bundle, store: ThresholdsStore, record: ThresholdsRecord) -> None:
        self.bundle = bundle
        self.store = store
        self.current = Tuning(record, bundle.policy(record))
        self._skipped_version = 0
        """The newest store version last found set for another bundle (logged once, not applied)."""

    def retune(self, record: ThresholdsRecord) -> Tuning:
        """Makes ``record`` the live thresholds for every request decided from now on, unless a newer version is
        already live: two writes racing can finish out of order, and the newer version must win. Returns the
        tuning of ``record`` either way."""
        tuning = Tuning(record, self.bundle.policy(record))
        live = self.current.record
        if record.version < live.version:
            log.info("thresholds_superseded", version=record.version, live=live.version)
            return tuning
        if record.version != live.version:
            log.info("thresholds_applied", version=record.version, updated_by=record.updated_by)
        self.current = tuning
        return tuning

    def refresh(self) -> bool:
        """Picks up a newer version from the store (written by any replica); returns whether one was applied.
        An unreadable store keeps the last good version, and a version set for another bundle (a rolling upgrade
        in progress) is not applied."""
        try:
            newest = self.store.version()
            if newest <= self.current.record.version or newest == self._skipped_version:
                return False
            entry = self.store.latest()
        except ThresholdsStoreError as exc:
            log.warning("thresholds_refresh_failed", error=str(exc))
            return False
        if entry.model_version != self.bundle.version:
            log.warning(
                "thresholds_skipped",
                version=entry.record.version,
                model_version=entry.model_version,
                ours=self.bundle.version,
            )
            self._skipped_version = entry.record.version
            return False
        self.retune(entry.record)
        return True
