"""Two router replicas, each a real ``router serve`` process configured by environment as a deployment would be,
sharing documents, the routing log and the thresholds store on one bucket of a local S3-compatible server.

Each replica writes concurrently with the other; each must see the other's writes: documents in its searches,
routing records in its log reads, threshold changes in its decisions.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import Any, TypeVar

import httpx
import pytest

from bench.service import serve
from tests.conftest import S3_BUCKET, s3_options

KEY = "replica-admin-key-0123456789"
ADMIN = {"Authorization": f"Bearer {KEY}"}
T = TypeVar("T")

DOCUMENTS = {
    "a": {
        "id": "quokka-ferry",
        "text": "# Quokka ferry timetable\n\nThe quokka ferry leaves the harbour at eleven past every odd hour, "
        "and only on days when the lighthouse shows a green lamp.",
    },
    "b": {
        "id": "marmot-bakery",
        "text": "# Marmot bakery\n\nThe marmot bakery proofs its rye dough for exactly nineteen hours in a cellar "
        "kept at nine degrees.",
    },
}
QUESTIONS = {"a": "When does the quokka ferry leave the harbour?", "b": "How long does the marmot bakery proof rye?"}


@contextmanager
def replica(env: dict[str, str]) -> Iterator[httpx.Client]:
    """``router serve`` in its own process; yields a client once ``/ready`` answers 200. SIGTERM at the end, which
    must shut it down cleanly."""
    with serve(env) as service, httpx.Client(base_url=f"http://127.0.0.1:{service.port}", timeout=60) as client:
        yield client
        service.process.terminate()
        # uvicorn shuts down gracefully, then ends by the signal it caught (exit status -15)
        assert service.process.wait(timeout=60) in (0, -signal.SIGTERM), service.log_file.read_text()[-3000:]
        assert "Application shutdown complete." in service.log_file.read_text()


def eventually(check: Callable[[], T], what: str, seconds: float = 20) -> T:
    """The first truthy result of ``check``, polled until ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while not (result := check()):
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.1)
    return result


def in_parallel(*calls: Callable[[], T]) -> list[T]:
    with ThreadPoolExecutor(len(calls)) as pool:
        return [future.result() for future in [pool.submit(call) for call in calls]]


def record_ids(client: httpx.Client) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        page = client.get("/v1/routing-logs", params={"limit": 500, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        ids += [record["request_id"] for record in page.json()["records"]]
        if (cursor := page.json()["next_cursor"]) is None:
            return ids


@pytest.fixture
def replicas(s3_endpoint: str) -> Iterator[dict[str, httpx.Client]]:
    prefix = f"s3://{S3_BUCKET}/replicas-{uuid.uuid4().hex}"
    options = json.dumps(s3_options(s3_endpoint))
    env = {
        "ROUTER_SERVER__ADMIN_API_KEY": KEY,
        "ROUTER_RETRIEVAL__URI": f"{prefix}/lancedb",
        "ROUTER_RETRIEVAL__STORAGE_OPTIONS": options,
        "ROUTER_RETRIEVAL__READ_CONSISTENCY_SECONDS": "0.5",
        "ROUTER_THRESHOLDS__URI": f"{prefix}/thresholds",
        "ROUTER_THRESHOLDS__STORAGE_OPTIONS": options,
        "ROUTER_THRESHOLDS__POLL_SECONDS": "0.2",
        "ROUTER_ROUTING_LOG__URI": f"{prefix}/routing-log",  # storage options: retrieval's
        "ROUTER_ROUTING_LOG__FLUSH_SECONDS": "0.2",
    }
    with ExitStack() as stack:
        a, b = in_parallel(*(lambda: stack.enter_context(replica(env)) for _ in "ab"))
        yield {"a": a, "b": b}


def test_two_replicas_share_documents_routing_log_and_thresholds(replicas: dict[str, httpx.Client]) -> None:
    a, b = replicas["a"], replicas["b"]

    # documents: each replica ingests its own, at the same time; each then finds the other's
    def ingest(name: str) -> httpx.Response:
        return replicas[name].post("/v1/documents", json={"documents": [DOCUMENTS[name]]}, headers=ADMIN)

    for response in in_parallel(lambda: ingest("a"), lambda: ingest("b")):
        assert response.status_code == 200, response.text
        assert response.json()["added"] == 1
    for reader, writer in ((b, "a"), (a, "b")):
        doc_id = DOCUMENTS[writer]["id"]
        path = f"/v1/documents/{doc_id}"
        eventually(lambda r=reader, p=path: r.get(p, headers=ADMIN).status_code == 200, doc_id)
        sources = reader.post("/v1/query", json={"query": QUESTIONS[writer], "route": "rag", "top_k": 1}).json()
        assert sources["sources"][0]["document_id"] == doc_id

    # routing log: requests to both replicas at once; either replica reads every record exactly once
    def send(client: httpx.Client, i: int) -> None:
        headers = {"X-Request-ID": f"replica-req-{i:03d}"}
        response = client.post("/v1/route", json={"query": f"question number {i}"}, headers=headers)
        assert response.status_code == 200, response.text

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: send(a if i % 2 else b, i), range(40)))
    wanted = Counter(f"replica-req-{i:03d}" for i in range(40))
    for client in (a, b):
        seen = eventually(
            lambda c=client: (
                (ids := Counter(i for i in record_ids(c) if i.startswith("replica-req-"))) == wanted and ids
            ),
            "every routing record on both replicas",
        )
        assert seen == wanted

    # thresholds: a change on one replica reaches the other's decisions; simultaneous changes both land
    current: dict[str, Any] = a.get("/v1/thresholds").json()
    body = {"thresholds": current["thresholds"], "cost_weight": 0.02, "note": "from a"}
    changed = a.put("/v1/thresholds", json=body, headers=ADMIN)
    assert changed.status_code == 200, changed.text
    version = changed.json()["version"]
    eventually(lambda: b.get("/v1/thresholds").json()["version"] == version, f"version {version} on b")
    assert b.post("/v1/route", json={"query": "who wrote hamlet"}).json()["thresholds_version"] == version
    both = in_parallel(
        lambda: a.put("/v1/thresholds", json=body | {"cost_weight": 0.03}, headers=ADMIN),
        lambda: b.put("/v1/thresholds", json=body | {"cost_weight": 0.04}, headers=ADMIN),
    )
    assert all(r.status_code == 200 for r in both), [r.text for r in both]
    assert sorted(r.json()["version"] for r in both) == [version + 1, version + 2]  # no version written twice
    for client in (a, b):
        eventually(lambda c=client: c.get("/v1/thresholds").json()["version"] == version + 2, "the last version")
