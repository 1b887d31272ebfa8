"""The versioned thresholds store: the live policy's thresholds and knob, every version kept as the audit trail.

Layout of the store directory (``thresholds.dir``)::

    versions/000001.json ...   one immutable record per version: thresholds, cost_weight, version, updated_at,
                               updated_by, action ("initial", "set", "rollback to N"), note
    current.json               a copy of the newest record: what replicas poll

A change takes an exclusive lock (``.lock``, ``fcntl.flock``), reads the newest version N, writes version N+1 and
then ``current.json``, each by writing a temporary file and renaming it (``models.bundle.atomic_write``): a crash at
any point leaves either the old or the new record, never a torn one, and two concurrent writers get consecutive
versions (the last one to take the lock wins). Versions only grow; a rollback writes the old values as a new version.

The lock is a local file lock: replicas sharing the directory over a network filesystem need one that honours
``flock``. Object storage is not supported yet (see the README).
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from models.bundle import BundleError, ThresholdsRecord, atomic_write, load_thresholds
from models.policy import Thresholds


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


class ThresholdsStore:
    def __init__(self, directory: Path, model_version: str) -> None:
        self.directory = directory
        self.model_version = model_version
        self._versions = directory / "versions"

    @classmethod
    def open(cls, directory: Path, initial: Path, model_version: str) -> ThresholdsStore:
        """Opens the store. When it is empty, or its thresholds were set for another bundle (probabilities from
        another model mean something else), the record in ``initial`` (the bundle's thresholds) becomes the next
        version."""
        store = cls(directory, model_version)
        with store._locked():
            if not store._version_files():
                seed = load_thresholds(initial)
                store._write(AuditedRecord(seed, "initial", f"from {initial}", model_version))
            elif store._current_model() != model_version:
                seed = load_thresholds(initial)
                record = replace(seed, version=store.version() + 1, updated_at=_now(), updated_by="router")
                store._write(
                    AuditedRecord(record, "initial", f"new model {model_version}, from {initial}", model_version)
                )
        store.current()  # refuse a broken store at start, naming the file
        return store

    def _current_model(self) -> str:
        return str(json.loads((self.directory / "current.json").read_bytes()).get("model_version", ""))

    def _version_files(self) -> list[Path]:
        return sorted(self._versions.glob("[0-9]*.json")) if self._versions.is_dir() else []

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _write(self, entry: AuditedRecord) -> None:
        data = _to_json(entry)
        atomic_write(self._versions / f"{entry.record.version:06d}.json", data)
        atomic_write(self.directory / "current.json", data)

    def current(self) -> ThresholdsRecord:
        return load_thresholds(self.directory / "current.json")

    def version(self) -> int:
        """The newest version, cheaply (what replicas poll)."""
        try:
            return int(json.loads((self.directory / "current.json").read_bytes())["version"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BundleError(f"{self.directory / 'current.json'}: unreadable thresholds record ({exc})") from exc

    def history(self) -> list[AuditedRecord]:
        """Every version, newest first."""
        entries = []
        for path in reversed(self._version_files()):
            raw = json.loads(path.read_bytes())
            action, note, model = (str(raw.get(key, "")) for key in ("action", "note", "model_version"))
            entries.append(AuditedRecord(load_thresholds(path), action, note, model))
        return entries

    def get(self, version: int) -> ThresholdsRecord:
        path = self._versions / f"{version:06d}.json"
        if not path.is_file():
            raise KeyError(version)
        return load_thresholds(path)

    def apply(
        self, thresholds: Thresholds, cost_weight: float, *, by: str, action: str, note: str = ""
    ) -> ThresholdsRecord:
        """Writes the next version and returns it."""
        with self._locked():
            record = ThresholdsRecord(
                thresholds=thresholds,
                cost_weight=cost_weight,
                version=self.version() + 1,
                updated_at=_now(),
                updated_by=by,
            )
            self._write(AuditedRecord(record, action, note, self.model_version))
        return record

    def rollback(self, version: int, *, by: str) -> ThresholdsRecord:
        old = self.get(version)
        return self.apply(old.thresholds, old.cost_weight, by=by, action=f"rollback to {version}")
