"""API keys: who a caller is, the guards that use it, and the refusal to start on a placeholder key.

Two kinds of key, both sent as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` and compared in constant time:

- the admin key (``server.admin_api_key``) for the endpoints that change the service's data, and for the reads when
  their ``protect_reads`` is set (``guards=[require_admin]``). No key configured: 403, the admin endpoints are off.
  A missing or wrong key: 401 with ``WWW-Authenticate: Bearer``.
- client keys (``server.client_api_keys``, by name) for the query endpoints (``guards=[require_client]``). None
  configured: those endpoints are open. Otherwise a caller without one of them gets 401.

A caller is known by the name of the client key it presented, else as the admin, else by its IP address
(:func:`caller`); rate limits (:mod:`router.lib.ratelimit`) and log lines (``client``) use that identity. Keys are never
logged, neither the configured ones nor the one presented.

Outside ``server.environment=development``, :func:`check_secrets` refuses a placeholder or weak key at start.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import Any

import structlog
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from pydantic import SecretStr

from router.lib.settings import Settings

log = structlog.get_logger("router.lib.auth")

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="router"'}
MIN_KEY_CHARS = 16
MIN_DISTINCT_CHARS = 4
PLACEHOLDER_WORDS = (
    "changeme", "changethis", "placeholder", "replaceme", "example", "dummy", "yourkey", "yourapikey", "yoursecret",
    "notasecret", "insecure", "secretkey", "password",
)  # fmt: skip
"""Words that mark a key as a placeholder, matched in the key lower-cased with everything but letters and digits
removed ("change-me-to-at-least-16-characters", the example Secret's value, reads "changemetoatleast16characters")."""


class InsecureSettings(RuntimeError):
    """A placeholder or weak secret outside development: the service refuses to start."""


@dataclass(frozen=True)
class Caller:
    kind: str  # "admin", "client" or "anonymous"
    name: str  # the client key's name, "admin", or the client's IP address

    @property
    def label(self) -> str:
        """The identity in rate limits and logs; never a key."""
        return self.name if self.kind == "admin" else f"{self.kind}:{self.name}"


def presented_key(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The key in ``Authorization: Bearer <key>``, else in ``X-API-Key``; None when neither carries one."""
    scheme, _, token = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return connection.headers.get("x-api-key", "").strip() or None


def _same(given: str, key: SecretStr) -> bool:
    return hmac.compare_digest(given.encode(), key.get_secret_value().encode())


def _identify(connection: ASGIConnection[Any, Any, Any, Any]) -> Caller:
    server = connection.app.state.settings.server
    given = presented_key(connection)
    if given is not None:
        if server.admin_api_key is not None and _same(given, server.admin_api_key):
            return Caller("admin", "admin")
        # every key is compared, so the time taken does not say which one (if any) matched
        matches = [name for name, key in server.client_api_keys.items() if _same(given, key)]
        if matches:
            return Caller("client", matches[0])
    return Caller("anonymous", connection.client.host if connection.client else "unknown")


def caller(connection: ASGIConnection[Any, Any, Any, Any]) -> Caller:
    """Who sent the request, worked out once per request and bound as ``client`` into its log lines."""
    state = connection.scope.setdefault("state", {})
    found: Caller | None = state.get("caller")
    if found is None:
        found = state["caller"] = _identify(connection)
        if found.kind != "anonymous":
            structlog.contextvars.bind_contextvars(client=found.label)
    return found


def require_admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    configured: SecretStr | None = connection.app.state.settings.server.admin_api_key
    if configured is None:
        log.warning("admin_access_denied", reason="disabled", path=connection.url.path)
        raise PermissionDeniedException("admin endpoints are disabled until ROUTER_SERVER__ADMIN_API_KEY is set")
    if caller(connection).kind != "admin":
        reason = "missing_key" if presented_key(connection) is None else "wrong_key"
        log.warning("admin_access_denied", reason=reason, path=connection.url.path)
        raise NotAuthorizedException(
            "send the admin key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'", headers=CHALLENGE
        )


def require_client(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """The query endpoints: open while no client key is configured, else one of them is needed."""
    if not connection.app.state.settings.server.client_api_keys or caller(connection).kind == "client":
        return
    reason = "missing_key" if presented_key(connection) is None else "wrong_key"
    log.warning("client_access_denied", reason=reason, path=connection.url.path)
    raise NotAuthorizedException(
        "send a client key (server.client_api_keys) as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
        headers=CHALLENGE,
    )


def weakness(value: str, *, min_chars: int = MIN_KEY_CHARS) -> str | None:
    """Why ``value`` is no real secret (a placeholder word, too short, too few distinct characters), else None."""
    folded = re.sub(r"[^a-z0-9]", "", value.lower())
    word = next((w for w in PLACEHOLDER_WORDS if w in folded), None)
    if word is not None:
        return f"it is a placeholder (contains {word!r})"
    if len(value) < min_chars:
        return f"it has fewer than {min_chars} characters"
    if len(set(value)) < MIN_DISTINCT_CHARS:
        return f"it has fewer than {MIN_DISTINCT_CHARS} distinct characters"
    return None


def check_secrets(settings: Settings) -> None:
    """Outside development, refuses (one line naming the setting, never the value) a placeholder or weak admin or
    client key, and a placeholder LLM key (its length is the LLM server's business)."""
    if settings.server.environment == "development":
        return
    found: list[tuple[str, str | None]] = []
    if settings.server.admin_api_key is not None:
        found.append(("ROUTER_SERVER__ADMIN_API_KEY", weakness(settings.server.admin_api_key.get_secret_value())))
    for name, key in settings.server.client_api_keys.items():
        found.append((f"ROUTER_SERVER__CLIENT_API_KEYS[{name!r}]", weakness(key.get_secret_value())))
    llm_key = settings.llm.api_key.get_secret_value() if settings.llm.api_key else ""
    if llm_key:
        found.append(("ROUTER_LLM__API_KEY", weakness(llm_key, min_chars=1)))
    for setting, why in found:
        if why is not None:
            raise InsecureSettings(
                f"{setting} is not a usable secret: {why}; with ROUTER_SERVER__ENVIRONMENT="
                f"{settings.server.environment} set a random one (e.g. openssl rand -hex 24)"
            )
