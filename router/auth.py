"""The admin-key guard for endpoints that change the service's data (``guards=[require_admin]``).

The key is ``server.admin_api_key`` (``ROUTER_SERVER__ADMIN_API_KEY``); clients send ``Authorization: Bearer <key>``
or ``X-API-Key: <key>``. No key configured: 403, the admin endpoints are off. A missing or wrong key: 401 with
``WWW-Authenticate: Bearer``. Keys are compared in constant time and never logged, neither the configured one nor
the one presented.
"""

from __future__ import annotations

import hmac
from typing import Any

import structlog
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from pydantic import SecretStr

log = structlog.get_logger("router.auth")

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="router-admin"'}


def presented_key(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The key in ``Authorization: Bearer <key>``, else in ``X-API-Key``; None when neither carries one."""
    scheme, _, token = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return connection.headers.get("x-api-key", "").strip() or None


def require_admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    configured: SecretStr | None = connection.app.state.settings.server.admin_api_key
    if configured is None:
        log.warning("admin_access_denied", reason="disabled", path=connection.url.path)
        raise PermissionDeniedException("admin endpoints are disabled until ROUTER_SERVER__ADMIN_API_KEY is set")
    given = presented_key(connection)
    if given is None or not hmac.compare_digest(given.encode(), configured.get_secret_value().encode()):
        log.warning(
            "admin_access_denied", reason="missing_key" if given is None else "wrong_key", path=connection.url.path
        )
        raise NotAuthorizedException(
            "send the admin key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'", headers=CHALLENGE
        )
