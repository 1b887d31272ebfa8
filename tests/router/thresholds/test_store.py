"""The versioned thresholds store, the same tests on a local directory and on S3 (a local moto server)."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import obstore
import pytest

from models.bundle import default_bundle_dir, load_thresholds
from models.policy import Thresholds
from router.thresholds.store import CURRENT, ThresholdsStore, ThresholdsStoreError
from tests.conftest import S3_BUCKET, s3_options

INITIAL = default_bundle_dir() / "thresholds.json"
VALUES = Thresholds(ft=0.3, rag=0.1, both=0.2)


@pytest.fixture(params=["local", "s3"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, str]]:
    if request.param == "local":
        return str(tmp_path / "thresholds"), {}
    endpoint = request.getfixturevalue("s3_endpoint")
    return f"s3://{S3_BUCKET}/thresholds-{uuid.uuid4().hex}", s3_options(endpoint)


def open_store(where: tuple[str, dict[str, str]], model: str = "model-a") -> ThresholdsStore:
    return ThresholdsStore.open(where[0], INITIAL, model, where[1])


def test_seeded_versioned_and_rolled_back(where: tuple[str, dict[str, str]]) -> None:
    store = open_store(where)
    seed = load_thresholds(INITIAL)
    assert store.version() == 1 and store.current().thresholds == seed.thresholds
    record = store.apply(VALUES, 0.05, by="test", action="set", note="more ft")
    assert record.version == 2 and store.current() == record
    assert store.rollback(1, by="test").version == 3
    assert store.current().thresholds == seed.thresholds
    history = store.history()
    assert [(e.record.version, e.action) for e in history] == [(3, "rollback to 1"), (2, "set"), (1, "initial")]
    assert history[1].note == "more ft" and history[1].model_version == "model-a"
    assert [e.record.version for e in store.history(limit=2)] == [3, 2]
    with pytest.raises(KeyError):
        store.get(99)
    assert open_store(where).version() == 3  # reopening the same bundle keeps the live version


def test_concurrent_writers_from_two_connections_get_contiguous_versions(where: tuple[str, dict[str, str]]) -> None:
    stores = [open_store(where), open_store(where)]
    written: list[int] = []
    lock = threading.Lock()

    def write(store: ThresholdsStore, knob: float) -> None:
        record = store.apply(VALUES, knob, by="test", action="set")
        with lock:
            written.append(record.version)

    threads = [threading.Thread(target=write, args=(stores[i % 2], i / 100)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(written) == list(range(2, 14))  # no version lost, none given twice
    newest = stores[0].history(limit=1)[0].record
    assert stores[1].current() == newest and newest.version == 13  # both agree on the last writer


def test_a_stale_hint_is_stepped_past(where: tuple[str, dict[str, str]]) -> None:
    store = open_store(where)
    store.apply(VALUES, 0.05, by="test", action="set")
    stale = json.loads(bytes(obstore.get(store.objects.store, "versions/000001.json").bytes()))
    obstore.put(store.objects.store, CURRENT, json.dumps(stale).encode())  # as if the writer of v2 lost its hint
    assert store.version() == 2 and store.current().cost_weight == 0.05


def test_another_bundle_reseeds_and_its_versions_are_marked(where: tuple[str, dict[str, str]]) -> None:
    store = open_store(where, "model-a")
    store.apply(VALUES, 0.05, by="test", action="set")
    upgraded = open_store(where, "model-b")
    latest = upgraded.latest()
    assert latest.record.version == 3 and latest.action == "initial" and latest.model_version == "model-b"
    assert latest.record.thresholds == load_thresholds(INITIAL).thresholds


def test_a_broken_record_is_refused_naming_it(tmp_path: Path) -> None:
    where = (str(tmp_path / "thresholds"), {})
    store = open_store(where)
    (tmp_path / "thresholds" / "versions" / "000002.json").write_text('{"version": 2, "thresholds": {"ft": 7}}')
    with pytest.raises(ThresholdsStoreError, match=r"000002\.json: invalid thresholds"):
        store.current()
    with pytest.raises(ThresholdsStoreError, match=r"000002\.json"):
        open_store(where)


def test_an_unreachable_store_is_an_error_naming_it() -> None:
    options = s3_options("http://127.0.0.1:9") | {"timeout": "1s", "connect_timeout": "1s"}
    with pytest.raises(ThresholdsStoreError, match="s3://nowhere/thresholds"):
        ThresholdsStore.open("s3://nowhere/thresholds", INITIAL, "model-a", options)
