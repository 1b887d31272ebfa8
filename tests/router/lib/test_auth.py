"""The pieces of router.lib.auth and router.lib.ratelimit that need no server: key weakness and the token bucket."""

from __future__ import annotations

import pytest

from router.lib.auth import weakness
from router.lib.ratelimit import RateLimiter
from router.lib.settings import RateLimitRule, RateLimitSettings

RULE = RateLimitRule(requests_per_second=2, burst=3)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("change-me-to-at-least-16-characters", "placeholder"),
        ("Placeholder_Key_With_Case_0001", "placeholder"),
        ("short-7c1f", "fewer than 16 characters"),
        ("abcabcabcabcabcabc", "fewer than 4 distinct"),
    ],
)
def test_weak_keys_are_named_with_their_reason(key: str, why: str) -> None:
    found = weakness(key)
    assert found is not None and why in found and key not in found


def test_random_keys_are_not_weak() -> None:
    assert weakness("5f0e9c2d7b4a61e8a93c0d1f") is None
    assert weakness("Zq8pL2mW9xR4tY7u") is None


def test_a_bucket_gives_its_burst_then_refills_at_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(RULE, {}, max_callers=10, clock=clock)
    assert [limiter.take("a", RULE) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a", RULE) == pytest.approx(0.5)  # one token comes back in 1/rate seconds
    assert limiter.take("b", RULE) == 0.0  # another caller has its own bucket
    clock.now += 0.5
    assert limiter.take("a", RULE) == 0.0 and limiter.take("a", RULE) > 0
    clock.now += 3600  # a long pause refills to the burst, not beyond
    assert [limiter.take("a", RULE) == 0.0 for _ in range(4)] == [True, True, True, False]


def test_the_least_recently_used_caller_is_dropped_beyond_the_cap() -> None:
    limiter = RateLimiter(RULE, {}, max_callers=2, clock=Clock())
    for caller in ("a", "b"):
        for _ in range(3):
            limiter.take(caller, RULE)
    limiter.take("b", RULE)  # b used last
    limiter.take("c", RULE)  # a is dropped
    assert limiter.take("b", RULE) > 0  # b kept its empty bucket
    assert limiter.take("a", RULE) == 0.0  # a starts full again


def test_rules_come_from_settings() -> None:
    assert RateLimiter.from_settings(RateLimitSettings()) is None
    limiter = RateLimiter.from_settings(
        RateLimitSettings(requests_per_second=1, burst=5, clients={"batch": {"requests_per_second": 50, "burst": 9}})
    )
    assert limiter is not None
    assert limiter.rule_for(None) == RateLimitRule(requests_per_second=1, burst=5)
    assert limiter.rule_for("ui") == RateLimitRule(requests_per_second=1, burst=5)
    assert limiter.rule_for("batch") == RateLimitRule(requests_per_second=50, burst=9)
    only_batch = RateLimiter.from_settings(RateLimitSettings(clients={"batch": {"requests_per_second": 5, "burst": 5}}))
    assert only_batch is not None and only_batch.rule_for("ui") is None  # only the named client is limited
