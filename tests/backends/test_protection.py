"""Circuit breaker states on a controlled clock, and the concurrency cap of a guard."""

from __future__ import annotations

import anyio
import pytest

from backends.errors import BackendSaturated, BackendTimeout, CircuitOpen, ModelNotFound, UpstreamError
from backends.protection import BreakerConfig, CircuitBreaker, Guard, is_backend_fault


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, **config: float) -> CircuitBreaker:
    defaults = {"failure_ratio": 0.5, "window": 10.0, "min_calls": 4, "cooldown": 5.0}
    return CircuitBreaker("llm:x", BreakerConfig(**(defaults | config)), clock)  # type: ignore[arg-type]


def run(b: CircuitBreaker, outcomes: list[bool | None]) -> None:
    for ok in outcomes:
        b.acquire()
        b.record(ok)


def test_opens_only_at_the_failure_ratio_over_enough_calls() -> None:
    clock = Clock()
    b = breaker(clock)
    run(b, [False, False, False])  # 3 failures, but fewer than min_calls
    assert b.state == "closed"
    run(b, [True])  # 3 of 4 failed
    assert b.state == "open"
    with pytest.raises(CircuitOpen, match="retrying it in 5s"):
        b.acquire()


def test_successes_keep_it_closed_and_old_calls_leave_the_window() -> None:
    clock = Clock()
    b = breaker(clock)
    run(b, [False, True, True, True, True])  # 1 of 5 failed
    assert b.state == "closed"
    run(b, [False])
    clock.now += 11  # all of those calls are out of the window now
    run(b, [False, True, True])  # 1 of 3 in the window: not enough calls to judge
    assert b.state == "closed"


def test_client_errors_are_not_counted() -> None:
    b = breaker(Clock())
    run(b, [None] * 10 + [False, False])
    assert b.state == "closed"


def test_half_opens_after_the_cooldown_and_one_probe_decides() -> None:
    clock = Clock()
    b = breaker(clock)
    run(b, [False] * 4)
    clock.now += 5
    assert b.state == "half_open"
    b.acquire()  # the probe
    with pytest.raises(CircuitOpen):
        b.acquire()  # only one probe at a time
    b.record(False)  # the probe failed: open for another cool-down
    assert b.state == "open"
    clock.now += 5
    b.acquire()
    b.record(True)
    assert b.state == "closed"
    run(b, [False] * 3)  # closed afresh: the old failures are forgotten
    assert b.state == "closed"


def test_a_probe_that_never_reached_the_backend_frees_its_slot() -> None:
    clock = Clock()
    b = breaker(clock)
    run(b, [False] * 4)
    clock.now += 5
    b.acquire()
    b.record(None)
    assert b.state == "half_open"
    b.acquire()  # another probe may go


@pytest.mark.parametrize(
    ("exc", "fault"),
    [
        (BackendTimeout("t", backend="llm"), True),
        (CircuitOpen("o", backend="llm"), True),
        (ModelNotFound("m", backend="llm", status=404), True),
        (UpstreamError("e", backend="llm", status=500), True),
        (UpstreamError("e", backend="llm", status=429), True),
        (UpstreamError("e", backend="llm", status=400), False),
        (BackendSaturated("s", backend="llm"), False),
        (ValueError("v"), False),
    ],
)
def test_what_counts_as_a_backend_fault(exc: Exception, fault: bool) -> None:
    assert is_backend_fault(exc) is fault


async def test_guard_caps_concurrency_and_fails_fast_when_saturated() -> None:
    guard = Guard("llm:x", max_concurrency=2, queue_timeout=0.05, breaker=breaker(Clock()))
    release = anyio.Event()
    entered = 0

    async def hold() -> None:
        nonlocal entered
        async with guard.call():
            entered += 1
            await release.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(hold)
        tg.start_soon(hold)
        await anyio.wait_all_tasks_blocked()
        assert guard.in_flight == 2
        with pytest.raises(BackendSaturated, match="2 calls in flight"):
            async with guard.call():
                pass
        release.set()
    assert entered == 2 and guard.in_flight == 0
    async with guard.call():  # slots are back
        assert guard.in_flight == 1


async def test_guard_records_outcomes_on_its_breaker() -> None:
    clock = Clock()
    guard = Guard("llm:x", max_concurrency=4, queue_timeout=0, breaker=breaker(clock, min_calls=2))
    for _ in range(2):
        with pytest.raises(UpstreamError):
            async with guard.call():
                raise UpstreamError("boom", backend="llm", status=503)
    assert guard.breaker.state == "open"
    with pytest.raises(CircuitOpen):
        async with guard.call():
            pass
    assert guard.in_flight == 0
