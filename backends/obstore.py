"""Objects in a local directory or object storage (``s3://``, ``gs://``, ``az://``) through one API (obstore): the
reads and conditional writes the thresholds store is built on. Every failure is an :class:`ObjectStoreError` naming
the object.

A *conditional create* (:meth:`Objects.create`) writes an object only if it does not exist (S3 ``If-None-Match: *``;
a no-clobber link on a local disk), so of two writers racing for one key exactly one succeeds. Every object is
written whole (a staged file renamed into place on disk; a single PUT on object storage).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import obstore
from obstore.exceptions import AlreadyExistsError, BaseError, NotFoundError
from obstore.store import LocalStore, from_url

if TYPE_CHECKING:
    from obstore.store import ClientConfig, ObjectStore

CLIENT_OPTIONS = {
    "allow_http", "allow_invalid_certificates", "connect_timeout", "default_content_type", "http1_only",
    "http2_only", "pool_idle_timeout", "pool_max_idle_per_host", "proxy_url", "timeout", "user_agent",
}  # fmt: skip
"""Keys of ``storage_options`` that configure the HTTP client; the rest configure the store (``aws_*``, ...)."""


class ObjectStoreError(RuntimeError):
    """An object cannot be read, listed or written (unreachable, denied); the message names it."""


def _store(uri: str, storage_options: Mapping[str, str]) -> ObjectStore:
    if "://" not in uri or uri.startswith("file://"):
        return LocalStore(Path(uri.removeprefix("file://")).resolve(), mkdir=True)
    client: dict[str, Any] = {}
    config: dict[str, str] = {}
    for key, value in storage_options.items():
        if key in CLIENT_OPTIONS:
            client[key] = value.lower() == "true" if key.startswith(("allow_", "http")) else value
        else:
            config[key] = value
    options: ClientConfig = client  # type: ignore[assignment]
    return from_url(uri, config=config or None, client_options=options or None)  # type: ignore[arg-type]


class Objects:
    """The objects under one URI."""

    def __init__(self, store: ObjectStore, where: str) -> None:
        self.store = store
        self.where = where

    @classmethod
    def open(cls, uri: str, storage_options: Mapping[str, str] | None = None) -> Objects:
        """A local directory (created if missing) or an object-storage URL, with LanceDB-style ``storage_options``
        (``aws_endpoint``, ``aws_access_key_id``, ``allow_http``, ...); credentials may also come from the usual
        environment variables (``AWS_*``, ...)."""
        try:
            return cls(_store(uri, storage_options or {}), uri)
        except (BaseError, OSError, ValueError) as exc:
            raise ObjectStoreError(f"{uri}: cannot open ({exc})") from exc

    def read(self, key: str) -> bytes | None:
        """The object's bytes; None when it does not exist."""
        try:
            return bytes(obstore.get(self.store, key).bytes())
        except (FileNotFoundError, NotFoundError):  # a local store raises the first, S3 the second
            return None
        except (BaseError, OSError) as exc:
            raise ObjectStoreError(f"{self.where}/{key}: cannot read ({exc})") from exc

    def exists(self, key: str) -> bool:
        try:
            obstore.head(self.store, key)
        except (FileNotFoundError, NotFoundError):
            return False
        except (BaseError, OSError) as exc:
            raise ObjectStoreError(f"{self.where}/{key}: cannot read ({exc})") from exc
        return True

    def keys(self, prefix: str) -> list[str]:
        try:
            return [meta["path"] for meta in obstore.list(self.store, prefix=prefix).collect()]
        except (BaseError, OSError) as exc:
            raise ObjectStoreError(f"{self.where}: cannot list {prefix} ({exc})") from exc

    def create(self, key: str, data: bytes) -> bool:
        """Writes ``key`` unless it exists; returns whether this call wrote it."""
        try:
            obstore.put(self.store, key, data, mode="create")
        except AlreadyExistsError:
            return False
        except (BaseError, OSError) as exc:
            raise ObjectStoreError(f"{self.where}/{key}: cannot write ({exc})") from exc
        return True

    def put(self, key: str, data: bytes) -> None:
        """Writes ``key`` whole, replacing what is there."""
        try:
            obstore.put(self.store, key, data)
        except (BaseError, OSError) as exc:
            raise ObjectStoreError(f"{self.where}/{key}: cannot write ({exc})") from exc
