"""The versioned thresholds store: the live policy's thresholds and knob, every version kept as the audit trail.

It lives in a local directory (the embedded default) or under an object-storage URL (``s3://bucket/prefix``,
``gs://``, ``az://``) that every replica shares; both go through the same code (``backends.obstore``)::

    versions/000001.json ...   one immutable record per version: thresholds, cost_weight, version, updated_at,
                               updated_by, action ("initial", "set", "rollback to N"), note, model_version
    current.json               a hint: the newest version some writer saw (what a poll reads first)

How concurrent writers stay safe without a lock: a new version is written with a *conditional create* (S3
``If-None-Match: *``; a no-clobber link on a local disk), so of two writers racing for version N+1 exactly one
succeeds; the other re-reads and takes N+2. Versions are therefore contiguous and never overwritten, and the newest
version is the live one (last writer wins, with a version number both agree on). ``current.json`` is overwritten
after each write and may lag when writers race, so readers start from it and step forward while the next version
exists. Every object is written whole (a staged file renamed into place on disk; a single PUT on object storage):
a crash leaves the old or the new record, never a torn one.

Thresholds mean something only for the model whose probabilities they cut, so each version names its bundle
(``model_version``). A store whose newest version was set for another bundle is re-seeded from this bundle's
thresholds when a replica opens it; while replicas of two bundles run side by side (a rolling upgrade), each
applies only the versions written for its own bundle.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backends.obstore import Objects, ObjectStoreError
from models.bundle import BundleError, ThresholdsRecord, load_thresholds, parse_thresholds
from models.policy import Thresholds

CURRENT = "current.json"
WRITE_ATTEMPTS = 50
"""Conditional creates tried before a write gives up (each loss means another writer just won a version)."""


class ThresholdsStoreError(RuntimeError):
    """The store cannot be read or written (unreachable, denied, or a record is broken)."""


@dataclass(frozen=True)
class AuditedRecord:
    record: ThresholdsRecord
    action: str
    note: str
    model_version: str
    """The bundle whose probabilities these thresholds are set against."""


def _to_json(entry: AuditedRecord) -> bytes:
    record = asdict(entry.record) | {"thresholds": entry.record.thresholds.as_dict()}
    extra = {"action": entry.action, "note": entry.note, "model_version": entry.model_version}
    return json.dumps(record | extra, indent=2).encode() + b"\n"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _key(version: int) -> str:
    return f"versions/{version:06d}.json"


class ThresholdsStore:
    def __init__(self, objects: Objects, model_version: str) -> None:
        self.objects = objects
        self.where = objects.where
        self.model_version = model_version

    @classmethod
    def open(
        cls, uri: str, initial: Path, model_version: str, storage_options: Mapping[str, str] | None = None
    ) -> ThresholdsStore:
        """Opens the store. When it is empty, or its newest thresholds were set for another bundle, the record in
        ``initial`` (the bundle's thresholds) becomes the next version. Raises :class:`ThresholdsStoreError` naming
        the store when it cannot be reached or its newest record is broken."""
        try:
            store = cls(Objects.open(uri, storage_options), model_version)
        except ObjectStoreError as exc:
            raise ThresholdsStoreError(f"cannot open the thresholds store: {exc}") from exc
        seed = load_thresholds(initial)
        newest = store.version()
        if newest == 0:
            store._create(AuditedRecord(replace(seed, version=1), "initial", f"from {initial}", model_version))
        elif store.latest().model_version != model_version:
            store.apply(
                seed.thresholds,
                seed.cost_weight,
                by="router",
                action="initial",
                note=f"new model {model_version}, from {initial}",
            )
        store.latest()  # refuse a broken store at start, naming the record
        return store

    def _read(self, key: str) -> dict[str, Any]:
        try:
            raw = self.objects.read(key)
        except ObjectStoreError as exc:
            raise ThresholdsStoreError(str(exc)) from exc
        if raw is None:
            raise FileNotFoundError(key)
        try:
            document = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ThresholdsStoreError(f"{self.where}/{key}: not valid JSON ({exc})") from exc
        if not isinstance(document, dict):
            raise ThresholdsStoreError(f"{self.where}/{key}: expected a JSON object")
        return document

    def _exists(self, version: int) -> bool:
        try:
            return self.objects.exists(_key(version))
        except ObjectStoreError as exc:
            raise ThresholdsStoreError(str(exc)) from exc

    def version(self) -> int:
        """The newest version (0 for an empty store): the hint, then forward while the next version exists. Two
        small reads when nothing changed: what replicas poll."""
        try:
            newest = int(self._read(CURRENT)["version"])
        except FileNotFoundError:
            newest = max(self._listed(), default=0)
        except (KeyError, TypeError, ValueError) as exc:
            raise ThresholdsStoreError(f"{self.where}/{CURRENT}: no version in it ({exc})") from exc
        while self._exists(newest + 1):
            newest += 1
        return newest

    def _listed(self) -> list[int]:
        try:
            found = self.objects.keys("versions")
        except ObjectStoreError as exc:
            raise ThresholdsStoreError(str(exc)) from exc
        return sorted(int(Path(path).stem) for path in found if Path(path).stem.isdigit())

    def _entry(self, version: int) -> AuditedRecord:
        key = _key(version)
        try:
            raw = self._read(key)
        except FileNotFoundError:
            raise KeyError(version) from None
        try:
            record = parse_thresholds(raw, f"{self.where}/{key}")
        except BundleError as exc:
            raise ThresholdsStoreError(str(exc)) from exc
        action, note, model = (str(raw.get(field, "")) for field in ("action", "note", "model_version"))
        return AuditedRecord(record, action, note, model)

    def latest(self) -> AuditedRecord:
        return self._entry(self.version())

    def current(self) -> ThresholdsRecord:
        return self.latest().record

    def get(self, version: int) -> ThresholdsRecord:
        """One version's record; ``KeyError`` when there is no such version."""
        return self._entry(version).record

    def history(self, limit: int = 100) -> list[AuditedRecord]:
        """The newest ``limit`` versions, newest first."""
        newest = self.version()
        return [self._entry(version) for version in range(newest, max(newest - limit, 0), -1)]

    def _create(self, entry: AuditedRecord) -> bool:
        """Writes a version unless it exists; returns whether this call wrote it."""
        data = _to_json(entry)
        try:
            if not self.objects.create(_key(entry.record.version), data):
                return False
        except ObjectStoreError as exc:
            raise ThresholdsStoreError(f"cannot write version {entry.record.version}: {exc}") from exc
        with suppress(ObjectStoreError):  # only a hint: readers step forward from an older one
            self.objects.put(CURRENT, data)
        return True

    def apply(
        self, thresholds: Thresholds, cost_weight: float, *, by: str, action: str, note: str = ""
    ) -> ThresholdsRecord:
        """Writes the next version and returns it."""
        for _ in range(WRITE_ATTEMPTS):
            record = ThresholdsRecord(thresholds, cost_weight, self.version() + 1, _now(), by)
            if self._create(AuditedRecord(record, action, note, self.model_version)):
                return record
        raise ThresholdsStoreError(f"{self.where}: lost {WRITE_ATTEMPTS} races for the next version; try again")

    def rollback(self, version: int, *, by: str) -> ThresholdsRecord:
        old = self.get(version)
        return self.apply(old.thresholds, old.cost_weight, by=by, action=f"rollback to {version}")
