"""Per-caller rate limits: a token bucket per caller on the ``/v1/`` endpoints (``rate_limit.*`` settings).

The caller is the name of the client key it sent, else its IP address (:func:`router.lib.auth.caller`); a request with
the admin key is not limited. Each bucket holds ``burst`` tokens and refills at ``requests_per_second``; a request
takes one token or is answered 429 with ``Retry-After`` (whole seconds until a token is back) before its handler
runs, so nothing is decided and no routing record is written. Buckets live in this process: with N replicas behind a
load balancer a caller may get up to N times the rate.

Litestar's own ``RateLimitMiddleware`` was not used: it counts fixed windows (no burst on top of a rate), keys on
the client address only, sends no ``Retry-After``, and serialises every request through one lock and a JSON store.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from litestar.connection import ASGIConnection
from litestar.exceptions import TooManyRequestsException
from litestar.handlers.base import BaseRouteHandler

from router.lib.auth import caller
from router.lib.settings import RateLimitRule, RateLimitSettings

log = structlog.get_logger("router.lib.ratelimit")

LIMITED_PREFIX = "/v1/"


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Token buckets by caller label, the least recently used dropped beyond ``max_callers`` (a dropped caller
    starts again with a full bucket, as one idle long enough would)."""

    def __init__(
        self,
        default: RateLimitRule | None,
        rules: Mapping[str, RateLimitRule],
        max_callers: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.default = default
        self.rules = dict(rules)
        self.max_callers = max_callers
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, cfg: RateLimitSettings) -> RateLimiter | None:
        """None when no limit is configured at all."""
        rate = cfg.requests_per_second
        default = None if rate is None else RateLimitRule(requests_per_second=rate, burst=cfg.burst)
        if default is None and not cfg.clients:
            return None
        return cls(default, cfg.clients, cfg.max_callers)

    def rule_for(self, client: str | None) -> RateLimitRule | None:
        """A client key's own rule, else the default one (None: not limited)."""
        return self.rules.get(client, self.default) if client is not None else self.default

    def take(self, label: str, rule: RateLimitRule) -> float:
        """Takes a token from ``label``'s bucket: 0.0 when there was one, else the seconds until there is."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.pop(label, None) or _Bucket(float(rule.burst), now)
            bucket.tokens = min(float(rule.burst), bucket.tokens + (now - bucket.stamp) * rule.requests_per_second)
            bucket.stamp = now
            self._buckets[label] = bucket  # most recently used last
            while len(self._buckets) > self.max_callers:
                self._buckets.popitem(last=False)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / rule.requests_per_second


def rate_limit(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """App-wide guard: runs before every other guard, so callers trying keys are limited too (by IP address)."""
    limiter: RateLimiter | None = connection.app.state.rate_limiter
    if limiter is None or not connection.url.path.startswith(LIMITED_PREFIX):
        return
    who = caller(connection)
    if who.kind == "admin":
        return
    rule = limiter.rule_for(who.name if who.kind == "client" else None)
    if rule is None:
        return
    wait = limiter.take(who.label, rule)
    if wait > 0:
        retry_after = max(1, math.ceil(wait))
        log.warning("rate_limited", caller=who.label, path=connection.url.path, retry_after=retry_after)
        raise TooManyRequestsException(
            f"rate limit of {rule.requests_per_second:g} requests/s (burst {rule.burst}) exceeded for {who.label}; "
            f"retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
