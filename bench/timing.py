"""Repeated timings and their summary, shared by the benchmarks and the peer (numpy only: the peer runs in its own
virtualenv)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np


def stats(seconds: Sequence[float]) -> dict[str, float]:
    """n, min, median and p99 of durations in seconds, in milliseconds."""
    ms = np.asarray(seconds) * 1000
    return {
        "n": len(ms),
        "min_ms": round(float(ms.min()), 3),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
    }


def timed(call: Callable[[], object], repeats: int) -> list[float]:
    """``repeats`` durations of ``call()``, after one call to warm up."""
    call()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out
