"""A small HTTP/1.1 load generator on asyncio streams: keep-alive connections, JSON POSTs, latencies in seconds.

It is deliberately minimal (no HTTP library per request) so that the client's own CPU cost, on the same 2-core
machine as the server, stays small next to the server's: about 30 µs a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Run:
    """What a load run saw: one latency per completed request, and the status codes."""

    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    client_cpu_seconds: float = 0.0
    """CPU time the load generator itself spent (it shares the machine's cores with the service)."""

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


IDLE_EXPIRY_S = 4.0
"""A keep-alive connection idle this long is replaced before use: uvicorn closes idle ones after 5 s (httpx's
pool expires them at 5 s for the same reason)."""


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.last_used = 0.0

    async def post(self, path: str, payload: object) -> tuple[int, bytes]:
        if self.writer is not None and time.monotonic() - self.last_used > IDLE_EXPIRY_S:
            await self.close()  # the server may have closed it already, as HTTP clients' pools assume
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.last_used = time.monotonic()
        assert self.reader is not None
        body = json.dumps(payload).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nhost: {self.host}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if not status_line:
            raise ConnectionError("the server closed the connection")
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
            self.reader = self.writer = None


async def closed_loop(
    host: str, port: int, path: str, payloads: Sequence[object], *, clients: int, seconds: float
) -> Run:
    """``clients`` connections, each sending its next request as soon as the last one is answered."""
    deadline = time.perf_counter() + seconds
    run = Run(seconds)
    counter = iter(range(10**9))

    async def client() -> None:
        conn = Connection(host, port)
        try:
            while time.perf_counter() < deadline:
                payload = payloads[next(counter) % len(payloads)]
                start = time.perf_counter()
                try:
                    status, _ = await conn.post(path, payload)
                except (OSError, ConnectionError, asyncio.IncompleteReadError):
                    run.errors += 1
                    await conn.close()
                    conn = Connection(host, port)
                    continue
                run.latencies.append(time.perf_counter() - start)
                run.statuses[status] = run.statuses.get(status, 0) + 1
        finally:
            await conn.close()

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(client() for _ in range(clients)))
    run.seconds = time.perf_counter() - started
    run.client_cpu_seconds = time.process_time() - cpu
    return run


async def open_loop(
    host: str, port: int, path: str, payloads: Sequence[object], *, rate: float, seconds: float, pool: int = 64
) -> Run:
    """Requests sent at a fixed ``rate`` per second whatever the answers do (a request that finds every one of
    ``pool`` connections busy opens a new one): latency then includes any queueing in the server."""
    run = Run(seconds)
    idle: list[Connection] = [Connection(host, port) for _ in range(pool)]
    tasks: list[asyncio.Task[None]] = []

    async def one(payload: object, scheduled: float) -> None:
        conn = idle.pop() if idle else Connection(host, port)
        try:
            status, _ = await conn.post(path, payload)
        except (OSError, ConnectionError, asyncio.IncompleteReadError):
            run.errors += 1
            await conn.close()
            return
        run.latencies.append(time.perf_counter() - scheduled)  # from when it should have been sent
        run.statuses[status] = run.statuses.get(status, 0) + 1
        idle.append(conn)

    start = time.perf_counter()
    for n in range(int(rate * seconds)):
        scheduled = start + n / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(payloads[n % len(payloads)], scheduled)))
    await asyncio.gather(*tasks)
    for conn in idle:
        await conn.close()
    return run
