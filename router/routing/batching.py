"""Micro-batching: concurrent requests share one forward pass of the embedding model.

One forward pass over 32 queries costs about as much as three single ones on a 2-core machine, so a service that
embeds each request on its own saturates at a fraction of what the model can do. :class:`MicroBatcher` queues the
items of concurrent callers and hands them to a single worker thread in batches:

- An idle batcher starts a batch at once: a lone request never waits (unless ``max_wait`` asks it to).
- While a batch runs, new items queue; when it ends, the next batch takes up to ``max_batch`` of them, oldest
  first. Batches therefore grow with the load by themselves, and no item waits longer than the batch ahead of it.
- Under load (the last batch held several items), the next batch waits up to ``REGROUP_SECONDS`` for as many
  items as the last one held, so that callers answered together and coming back one by one are not split into a
  small batch and a large one stuck behind it. A lone caller never waits.
- ``max_wait`` (default 0) holds every batch open that long for more items: latency traded for larger batches.
- ``max_queue`` bounds the waiting items: past it, :meth:`~MicroBatcher.submit` raises :class:`QueueFull` at once,
  so an overload is answered quickly (the service answers 503 with ``Retry-After``) instead of queueing without end.
- Work runs in a worker thread, off the event loop. A failing batch fails each of its callers with the error; a
  caller that gives up (cancelled) is skipped, and the others in its batch are unaffected.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import anyio
import structlog

log = structlog.get_logger("router.routing.batching")
REGROUP_SECONDS = 0.005
In = TypeVar("In")
Out = TypeVar("Out")


class BatcherClosed(RuntimeError):
    """The batcher was closed while an item was waiting, or before it was submitted."""


class QueueFull(RuntimeError):
    """``max_queue`` items are already waiting: the caller is turned away at once rather than queued."""


@dataclass(frozen=True)
class Batched(Generic[Out]):
    """One item's result, and the batch it rode in: its size and how long the item waited for it to start."""

    value: Out
    batch_size: int
    wait_ms: float


@dataclass
class _Pending(Generic[In, Out]):
    item: In
    future: asyncio.Future[Batched[Out]]
    queued: float


class MicroBatcher(Generic[In, Out]):
    """Runs ``work(items) -> results`` (one result per item, same order) over batches of concurrent items."""

    def __init__(
        self,
        work: Callable[[list[In]], Sequence[Out]],
        *,
        max_batch: int = 64,
        max_wait: float = 0.0,
        max_queue: int | None = None,
    ) -> None:
        if max_batch < 1 or max_wait < 0 or (max_queue is not None and max_queue < 1):
            raise ValueError("max_batch must be >= 1, max_wait >= 0 and max_queue None or >= 1")
        self.work, self.max_batch, self.max_wait, self.max_queue = work, max_batch, max_wait, max_queue
        self._queue: deque[_Pending[In, Out]] = deque()
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._running: list[_Pending[In, Out]] = []
        self._closed = False
        self.batches = 0
        self.items = 0

    async def submit(self, item: In) -> Batched[Out]:
        if self._closed:
            raise BatcherClosed("the batcher is closed")
        if self.max_queue is not None and len(self._queue) >= self.max_queue:
            raise QueueFull(f"{len(self._queue)} items are waiting (the most is {self.max_queue})")
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")
        future: asyncio.Future[Batched[Out]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(item, future, time.perf_counter()))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        last = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.max_wait and len(self._queue) < self.max_batch:
                await asyncio.sleep(self.max_wait)
            elif last > 1 and len(self._queue) < last:
                await self._regroup(min(last, self.max_batch))
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
                batch = [p for p in batch if not p.future.done()]  # callers that gave up
                if batch:
                    await self._run_batch(batch)
                last = len(batch)

    async def _regroup(self, size: int) -> None:
        """Under load, the callers of the batch that just ended come back one by one as the event loop serves
        them; starting at the first would split them into a small batch and a large one behind it, and the large
        one would wait for both. So wait up to ``REGROUP_SECONDS`` for ``size`` items."""
        deadline = time.perf_counter() + REGROUP_SECONDS
        while len(self._queue) < size and (left := deadline - time.perf_counter()) > 0:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)

    async def _run_batch(self, batch: list[_Pending[In, Out]]) -> None:
        started = time.perf_counter()
        self._running = batch
        try:
            results = await anyio.to_thread.run_sync(self.work, [p.item for p in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batch work returned {len(results)} results for {len(batch)} items")
        except Exception as exc:
            log.warning("batch_failed", size=len(batch), error=f"{type(exc).__name__}: {exc}")
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        self.batches += 1
        self.items += len(batch)
        for pending, value in zip(batch, results, strict=True):
            if not pending.future.done():
                wait_ms = round((started - pending.queued) * 1000, 2)
                pending.future.set_result(Batched(value, len(batch), wait_ms))

    async def close(self) -> None:
        """Stops the worker (a service closes it after serving its last request). Items still waiting, or in a batch
        that has not finished, fail with :class:`BatcherClosed`: no caller is left hanging."""
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        for pending in [*self._running, *self._queue]:
            if not pending.future.done():
                pending.future.set_exception(BatcherClosed("the service is stopping"))
        self._queue.clear()
