"""Domain errors: what a request the service cannot serve raises, below the HTTP layer (no litestar here).
``router.lib.problems`` is the one place that maps these, litestar's own and the backends' errors to HTTP.

    RouterError          a request the service cannot serve
    ├── InvalidQuery     the query is empty, whitespace or too long, or a filter is unusable (400)
    ├── NoAnswer         every step of the answering plan failed (503, each failure listed in ``attempts``;
                         ``Retry-After`` when they were all saturation or open circuits)
    └── Overloaded       too many queries already wait to be decided (503 with ``Retry-After``)
    ClientLeft           the client closed the connection before its request arrived whole (499, logged at
                         info: not a server error)
    ConfigurationError   the settings name something the backends do not have; the service refuses to start
"""

from __future__ import annotations

from typing import Any


class RouterError(Exception):
    status_code = 400

    @property
    def retryable(self) -> bool:
        """Answered with ``Retry-After``: trying again shortly may succeed."""
        return False


class InvalidQuery(RouterError):
    pass


TRANSIENT_REASONS = frozenset({"saturated", "circuit_open"})
RETRY_AFTER_S = 1


class NoAnswer(RouterError):
    status_code = 503

    def __init__(self, attempts: list[dict[str, str]]) -> None:
        tried = "; ".join(f"{a['step']}: {a['backend']} {a['reason']}" for a in attempts) or "nothing could be tried"
        super().__init__(f"no route could answer ({tried})")
        self.attempts = attempts

    @property
    def retryable(self) -> bool:
        """All the failures were saturation or open circuits."""
        return bool(self.attempts) and all(a["reason"] in TRANSIENT_REASONS for a in self.attempts)

    def body(self) -> dict[str, Any]:
        return {"status": self.status_code, "detail": str(self), "attempts": self.attempts}


class Overloaded(RouterError):
    status_code = 503

    @property
    def retryable(self) -> bool:
        return True


class ConfigurationError(Exception):
    """The settings name something the backends do not have; the service refuses to start."""


class ClientLeft(Exception):
    """The client closed the connection before its request arrived whole; nobody is left to answer."""

    status_code = 499
    """nginx's "client closed request": counted apart from the 4xx a client is sent and the 5xx the server causes."""
