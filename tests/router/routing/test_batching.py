"""Micro-batching: concurrent callers share batches, nobody waits behind more than one batch, failures stay local."""

from __future__ import annotations

import threading
import time

import anyio
import pytest

from router.routing.batching import BatcherClosed, MicroBatcher, QueueFull


class Recorder:
    """Doubles each item, taking ``seconds`` per batch, and records the batches it was given."""

    def __init__(self, seconds: float = 0.02, fail_on: int | None = None) -> None:
        self.seconds, self.fail_on = seconds, fail_on
        self.batches: list[list[int]] = []
        self.threads: set[str] = set()

    def __call__(self, items: list[int]) -> list[int]:
        self.threads.add(threading.current_thread().name)
        self.batches.append(items)
        time.sleep(self.seconds)
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError(f"cannot take {self.fail_on}")
        return [2 * i for i in items]


async def _submit_all(batcher: MicroBatcher[int, int], items: list[int]) -> dict[int, int]:
    results: dict[int, int] = {}

    async def one(item: int) -> None:
        results[item] = (await batcher.submit(item)).value

    async with anyio.create_task_group() as tg:
        for item in items:
            tg.start_soon(one, item)
    return results


async def test_concurrent_items_share_batches_and_get_their_own_results() -> None:
    work = Recorder()
    batcher = MicroBatcher(work, max_batch=16)
    results = await _submit_all(batcher, list(range(40)))
    assert results == {i: 2 * i for i in range(40)}
    # All 40 arrive before the worker first runs: full batches, oldest first.
    assert [len(b) for b in work.batches] == [16, 16, 8]
    assert [i for b in work.batches for i in b] == list(range(40))
    assert (batcher.batches, batcher.items) == (3, 40)
    assert threading.main_thread().name not in work.threads  # off the event loop
    await batcher.close()


async def test_a_lone_item_does_not_wait_and_reports_its_batch() -> None:
    batcher = MicroBatcher(Recorder(seconds=0), max_batch=8)
    result = await batcher.submit(5)
    assert (result.value, result.batch_size) == (10, 1)
    assert result.wait_ms < 50
    await batcher.close()


async def test_max_wait_gathers_items_that_arrive_within_it() -> None:
    work = Recorder(seconds=0)
    batcher = MicroBatcher(work, max_batch=8, max_wait=0.05)

    async def late(item: int) -> None:
        await anyio.sleep(0.01)
        await batcher.submit(item)

    async with anyio.create_task_group() as tg:
        tg.start_soon(batcher.submit, 1)
        tg.start_soon(late, 2)
    assert work.batches == [[1, 2]]
    await batcher.close()


async def test_a_failing_batch_fails_only_its_own_callers() -> None:
    batcher = MicroBatcher(Recorder(fail_on=3), max_batch=4)
    outcomes: dict[int, object] = {}

    async def one(item: int) -> None:
        try:
            outcomes[item] = (await batcher.submit(item)).value
        except ValueError as exc:
            outcomes[item] = str(exc)

    async with anyio.create_task_group() as tg:
        for item in range(9):
            tg.start_soon(one, item)
    # batches: [0, 1, 2, 3] (fails), [4, 5, 6, 7], [8]
    failed = "cannot take 3"
    assert outcomes == {0: failed, 1: failed, 2: failed, 3: failed, 4: 8, 5: 10, 6: 12, 7: 14, 8: 16}
    assert (await batcher.submit(1)).value == 2  # and the batcher goes on
    await batcher.close()


async def test_a_caller_that_gives_up_is_skipped() -> None:
    work = Recorder(seconds=0.05)
    batcher = MicroBatcher(work, max_batch=8)
    async with anyio.create_task_group() as tg:
        tg.start_soon(batcher.submit, 0)  # runs alone for 50 ms
        await anyio.sleep(0.01)
        with anyio.move_on_after(0.01):
            await batcher.submit(1)  # gives up while queued
        tg.start_soon(batcher.submit, 2)
    assert work.batches == [[0], [2]]
    await batcher.close()


async def test_close_fails_waiting_callers_and_refuses_new_ones() -> None:
    batcher = MicroBatcher(Recorder(seconds=0.1), max_batch=1)
    errors: list[BaseException] = []

    async def one(item: int) -> None:
        try:
            await batcher.submit(item)
        except BatcherClosed as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for item in range(3):
            tg.start_soon(one, item)
        await anyio.sleep(0.02)
        await batcher.close()
    assert len(errors) == 3  # the one in its batch and the two queued: nobody hangs
    with pytest.raises(BatcherClosed):
        await batcher.submit(9)


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(Recorder(), max_batch=0)


async def test_a_full_queue_turns_callers_away_at_once_and_serves_the_rest() -> None:
    work = Recorder(seconds=0.05)
    batcher = MicroBatcher(work, max_batch=4, max_queue=6)
    outcomes: dict[int, object] = {}

    async def one(item: int) -> None:
        try:
            outcomes[item] = (await batcher.submit(item)).value
        except QueueFull as exc:
            outcomes[item] = exc

    async with anyio.create_task_group() as tg:
        for item in range(10):
            tg.start_soon(one, item)
    # all ten arrive before the worker takes any: six queue, four are turned away without waiting for a batch
    refused = sorted(i for i, outcome in outcomes.items() if isinstance(outcome, QueueFull))
    assert refused == [6, 7, 8, 9]
    assert {i: outcomes[i] for i in range(6)} == {i: 2 * i for i in range(6)}
    assert "6 items are waiting (the most is 6)" in str(outcomes[6])
    assert (await batcher.submit(20)).value == 40  # room again once the queue drains
    await batcher.close()
    with pytest.raises(ValueError, match="max_queue"):
        MicroBatcher(Recorder(), max_queue=0)
