"""The HTTP server's own defences (router.server.http), against a real ``router serve`` process: idle, half-sent and
slow connections are closed on their deadlines, headers are bounded, a connection flood cannot exhaust the process's
file descriptors or stop ``/health`` answering, and SIGTERM stops the process on time with a client stuck mid-body,
flushing the routing log."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import lancedb
import pytest

from bench.service import Service, serve

DEADLINES = {
    "ROUTER_SERVER__HEADER_TIMEOUT_SECONDS": "1.5",
    "ROUTER_SERVER__BODY_TIMEOUT_SECONDS": "2",
    "ROUTER_SERVER__KEEP_ALIVE_SECONDS": "1",
    "ROUTER_SERVER__MAX_CONNECTIONS": "64",
    "ROUTER_SERVER__SHUTDOWN_TIMEOUT_SECONDS": "3",
}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with serve(DEADLINES) as service:
        yield service


@contextmanager
def connection(service: Service) -> Iterator[socket.socket]:
    sock = socket.create_connection(("127.0.0.1", service.port), timeout=10)
    try:
        yield sock
    finally:
        sock.close()


def closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the server closed ``sock`` within ``seconds``, and what it sent before."""
    sock.settimeout(seconds)
    received = b""
    deadline = time.monotonic() + seconds
    with suppress(TimeoutError, ConnectionResetError):
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                return True, received
            received += chunk
    return False, received


def health(service: Service) -> int:
    return httpx.get(f"http://127.0.0.1:{service.port}/health", timeout=5).status_code


@pytest.mark.parametrize(
    "sent",
    [b"", b"GET /health HT", b"POST /v1/route HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"],
    ids=["idle", "partial request line", "partial headers"],
)
def test_a_connection_without_complete_headers_is_closed_with_408(guarded: Service, sent: bytes) -> None:
    with connection(guarded) as sock:
        sock.sendall(sent)
        closed, answer = closed_within(sock, 6)
    assert closed, "the server kept a connection without headers past its deadline"
    assert answer.startswith(b"HTTP/1.1 408 ") and b"request headers not received within 1.5 s" in answer


def test_a_body_that_never_arrives_is_dropped_on_its_deadline(guarded: Service) -> None:
    head = b"POST /v1/route HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    with connection(guarded) as sock:
        sock.sendall(head + b'{"query":')
        started = time.monotonic()
        closed, _ = closed_within(sock, 8)
        waited = time.monotonic() - started
    assert closed and waited < 6, waited
    with connection(guarded) as sock:  # one byte every second never completes it either
        sock.sendall(head)
        started = time.monotonic()
        for _ in range(8):
            try:
                sock.sendall(b" ")
            except OSError:
                break
            time.sleep(1)
        assert time.monotonic() - started < 7
    assert health(guarded) == 200


def test_an_idle_kept_alive_connection_is_closed(guarded: Service) -> None:
    with connection(guarded) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        closed, _ = closed_within(sock, 5)
    assert closed


@pytest.mark.parametrize(
    "headers",
    [
        b"X-Big: " + b"a" * 20_000 + b"\r\n",
        b"".join(b"X-%d: v\r\n" % i for i in range(150)),
        b"X-Endless: " + b"a" * 40_000,  # never finished
    ],
    ids=["one large header", "too many headers", "a header that never ends"],
)
def test_oversized_headers_are_431(guarded: Service, headers: bytes) -> None:
    with connection(guarded) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n" + headers + (b"\r\n" if headers.endswith(b"\r\n") else b""))
        closed, answer = closed_within(sock, 5)
    assert closed and answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"server.max_header_bytes" in answer
    assert health(guarded) == 200


def test_a_connection_flood_leaves_health_answering(guarded: Service) -> None:
    """Four times the connection cap, held open without a request: the oldest idle ones are closed to make room,
    file descriptors stay bounded, and /health answers throughout."""
    flood: list[socket.socket] = []
    statuses = []
    try:
        for i in range(256):
            sock = socket.socket()
            sock.settimeout(5)
            with suppress(OSError):
                sock.connect(("127.0.0.1", guarded.port))
            flood.append(sock)
            if i % 32 == 31:
                statuses.append(health(guarded))
        open_fds = len(list(Path(f"/proc/{guarded.process.pid}/fd").iterdir()))
    finally:
        for sock in flood:
            sock.close()
    assert statuses == [200] * 8
    assert open_fds < 64 + 60, open_fds  # the cap, plus the process's own files and sockets
    events = [json.loads(line) for line in guarded.log_file.read_text().splitlines() if line.startswith("{")]
    evicted = [e for e in events if e.get("event") == "connection_evicted"]
    assert 1 <= len(evicted) <= 10, len(evicted)  # about 190 evictions, reported once a second, not each


def test_sigterm_stops_on_time_with_a_client_stuck_mid_body(tmp_path: Path) -> None:
    env = DEADLINES | {
        "ROUTER_SERVER__BODY_TIMEOUT_SECONDS": "120",  # the shutdown deadline, not the body deadline, ends it
        "ROUTER_ROUTING_LOG__URI": str(tmp_path / "routing-log"),
        "ROUTER_ROUTING_LOG__FLUSH_SECONDS": "60",
    }
    with serve(env) as service:
        client = httpx.Client(base_url=f"http://127.0.0.1:{service.port}", timeout=30)
        for i in range(5):
            assert client.post("/v1/route", json={"query": f"question {i}"}).status_code == 200
        client.close()
        with connection(service) as sock:
            sock.sendall(b'POST /v1/route HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"query":')
            time.sleep(0.5)
            started = time.monotonic()
            service.process.send_signal(signal.SIGTERM)
            code = service.process.wait(timeout=30)
            stopped = time.monotonic() - started
        log = service.log_file.read_text()
    assert code in (0, -signal.SIGTERM) and stopped < 10, stopped  # shutdown deadline 3 s; the Deployment's 40 s
    events = [json.loads(line).get("event") for line in log.splitlines() if line.startswith("{")]
    assert "Application shutdown complete." in events
    table = lancedb.connect(str(tmp_path / "routing-log")).open_table("routing_log")
    assert table.count_rows() == 5  # the five decisions, flushed at the stop


def test_a_client_leaving_mid_body_is_not_a_server_error(guarded: Service) -> None:
    """Any client could inflate the 5xx alert by hanging up mid-body: it is logged at info as 499 instead."""

    def left_and_failed() -> tuple[float, float]:
        text = httpx.get(f"http://127.0.0.1:{guarded.port}/metrics", timeout=5).text
        counted = [line for line in text.splitlines() if line.startswith("router_http_requests_total{")]
        left = sum(float(line.split()[-1]) for line in counted if 'path="/v1/route"' in line and 'status="499"' in line)
        return left, sum(float(line.split()[-1]) for line in counted if 'status="5' in line)

    before, failed_before = left_and_failed()
    logged_before = len(guarded.log_file.read_text().splitlines())
    for _ in range(3):
        with connection(guarded) as sock:
            sock.sendall(b"POST /v1/route HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
            sock.sendall(b"Content-Length: 100\r\n\r\n" + b'{"query": "who')
            time.sleep(0.3)
    time.sleep(1)
    after, failed_after = left_and_failed()
    assert (after - before, failed_after - failed_before) == (3, 0)
    new = guarded.log_file.read_text().splitlines()[logged_before:]
    lines = [json.loads(line) for line in new if line.startswith("{")]
    left = [line for line in lines if line.get("event") == "request_completed" and line.get("status") == 499]
    assert len(left) == 3 and {line["level"] for line in left} == {"info"}


def statuses_from_three_forwarded_clients(env: dict[str, str]) -> list[int]:
    """Three requests from loopback, each claiming another client in X-Forwarded-For, against a limit of two."""
    limit = {"ROUTER_RATE_LIMIT__REQUESTS_PER_SECOND": "0.01", "ROUTER_RATE_LIMIT__BURST": "2"}
    with serve(limit | env) as service:
        url = f"http://127.0.0.1:{service.port}/v1/route"
        headers = [{"X-Forwarded-For": f"203.0.113.{i}"} for i in range(3)]
        return [httpx.post(url, json={"query": "who wrote hamlet"}, headers=h, timeout=30).status_code for h in headers]


def test_forwarded_addresses_are_believed_only_from_configured_proxies() -> None:
    """Anything on the host could vary X-Forwarded-For to escape the per-IP rate limit when loopback was trusted."""
    assert statuses_from_three_forwarded_clients({}) == [200, 200, 429]
    behind_a_proxy = {"ROUTER_SERVER__TRUSTED_PROXIES": '["127.0.0.1"]'}  # a proxy on the host
    assert statuses_from_three_forwarded_clients(behind_a_proxy) == [200, 200, 200]  # each client its own bucket


def test_a_body_arriving_with_its_headers_is_not_counted_as_headers(guarded: Service) -> None:
    """One write holding the head and a 200 kB body (what a client's TCP stack often delivers) is a request, not
    an oversized head."""
    body = json.dumps({"query": "x" * 200_000}).encode()
    head = b"POST /v1/route HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    with connection(guarded) as sock:
        sock.sendall(head % len(body) + body)
        answer = response(sock)
    assert answer.startswith(b"HTTP/1.1 400 ") and b"query is 200000 characters" in answer, answer[:300]


def response(sock: socket.socket) -> bytes:
    """One whole HTTP response read from ``sock`` (its head, then Content-Length bytes of body)."""
    sock.settimeout(10)
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body
