"""Protecting a backend from the service and the service from a backend: a circuit breaker and a concurrency cap.

``CircuitBreaker``: closed -> open when, over the last ``window`` seconds, at least ``min_calls`` calls finished and
the share of failures reached ``failure_ratio``. Open refuses every call (:class:`CircuitOpen`) for ``cooldown``
seconds, then half-opens: ``probes`` calls go through; one success closes it, one failure opens it again for another
cool-down. Only failures of the backend count (timeouts, unreachable, 5xx, 429, an unknown model): a 400 for one
bad prompt says nothing about the backend's health and is not recorded at all.

``Guard``: one backend's breaker plus a cap on concurrent calls. A call waits at most ``queue_timeout`` seconds for
a slot and then fails with :class:`BackendSaturated`, so overload turns into a fast, explicit error (and a fallback)
instead of an unbounded queue.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

import anyio

from backends.errors import (
    BackendError,
    BackendSaturated,
    BackendTimeout,
    BackendUnavailable,
    CircuitOpen,
    ModelNotFound,
    UpstreamError,
)

BreakerState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True)
class BreakerConfig:
    failure_ratio: float = 0.5
    window: float = 30.0
    min_calls: int = 10
    cooldown: float = 15.0
    probes: int = 1


def is_backend_fault(exc: BaseException) -> bool:
    """Whether ``exc`` says the backend itself is unhealthy (so it counts against its breaker)."""
    if isinstance(exc, BackendTimeout | BackendUnavailable | ModelNotFound):
        return True
    if isinstance(exc, UpstreamError):
        return exc.status >= 500 or exc.status == 429
    return isinstance(exc, BackendError) and not isinstance(exc, BackendSaturated)


class CircuitBreaker:
    def __init__(self, name: str, config: BreakerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.config = config
        self._clock = clock
        self._calls: deque[tuple[float, bool]] = deque()
        self._state: BreakerState = "closed"
        self._opened_at = 0.0
        self._probes_out = 0

    @property
    def state(self) -> BreakerState:
        if self._state == "open" and self._clock() - self._opened_at >= self.config.cooldown:
            self._state, self._probes_out = "half_open", 0
        return self._state

    def acquire(self) -> None:
        """Admits one call or raises :class:`CircuitOpen`. Every admitted call must end in :meth:`record`."""
        state = self.state
        if state == "closed":
            return
        if state == "half_open" and self._probes_out < self.config.probes:
            self._probes_out += 1
            return
        wait = max(0.0, self.config.cooldown - (self._clock() - self._opened_at))
        raise CircuitOpen(
            f"{self.name} circuit is open after repeated failures; retrying it in {wait:.0f}s", backend=self.name
        )

    def record(self, ok: bool | None) -> None:
        """The outcome of an admitted call: True success, False backend fault, None neither (a client error)."""
        now = self._clock()
        if self._state == "half_open":
            self._probes_out = max(0, self._probes_out - 1)
            if ok is not None:
                self._close() if ok else self._open(now)
            return
        if ok is None or self._state == "open":
            return
        self._calls.append((now, ok))
        while self._calls and self._calls[0][0] < now - self.config.window:
            self._calls.popleft()
        failures = sum(1 for _, good in self._calls if not good)
        if len(self._calls) >= self.config.min_calls and failures >= self.config.failure_ratio * len(self._calls):
            self._open(now)

    def _open(self, now: float) -> None:
        self._state, self._opened_at = "open", now
        self._calls.clear()

    def _close(self) -> None:
        self._state = "closed"
        self._calls.clear()


class Guard:
    """A backend's breaker and concurrency cap; wrap each call in ``async with guard.call():``."""

    def __init__(self, name: str, *, max_concurrency: int, queue_timeout: float, breaker: CircuitBreaker) -> None:
        self.name = name
        self.breaker = breaker
        self.max_concurrency = max_concurrency
        self._slots = anyio.Semaphore(max_concurrency)
        self._queue_timeout = queue_timeout

    @property
    def in_flight(self) -> int:
        return self.max_concurrency - self._slots.value

    @asynccontextmanager
    async def call(self) -> AsyncIterator[None]:
        self.breaker.acquire()
        acquired = False
        try:
            try:
                self._slots.acquire_nowait()
                acquired = True
            except anyio.WouldBlock:
                with anyio.move_on_after(self._queue_timeout):
                    await self._slots.acquire()
                    acquired = True
            if not acquired:
                raise BackendSaturated(
                    f"{self.name} is saturated: {self.max_concurrency} calls in flight and no slot freed within "
                    f"{self._queue_timeout}s",
                    backend=self.name,
                )
        except BaseException:
            self.breaker.record(None)  # never reached the backend: release a half-open probe without a verdict
            raise
        try:
            yield
        except BaseException as exc:
            self.breaker.record(False if is_backend_fault(exc) else None)
            raise
        else:
            self.breaker.record(True)
        finally:
            self._slots.release()
