"""Property-based fuzzing of the served app against its own OpenAPI schema (schemathesis + hypothesis).

Every operation in ``/schema/openapi.json``, admin ones included (the admin key is sent), gets requests generated
from the schema: valid ones (positive) and ones that break it (negative: wrong types, missing or unknown fields,
values out of bounds). Each response must not be a server error, must have a documented status and content type,
and its body must match the documented schema. The run is bounded (examples per operation, no shrinking, a fixed
seed) so that it takes well under two minutes on two cores; the number of requests is printed and written to
``var/fuzz/last-run.json``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from router.lib.settings import Settings
from tests.integration.conftest import LiveService, serve

ADMIN_KEY = "fuzz-admin-key-0123456789"
EXAMPLES = {GenerationMode.POSITIVE: 40, GenerationMode.NEGATIVE: 25}
"""Examples per operation and mode (fewer where the schema allows fewer distinct requests)."""
MIN_REQUESTS = 800
"""The floor the run must reach: fewer means operations were skipped or generation failed quietly."""
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
REPORT = Path(__file__).resolve().parents[2] / "var" / "fuzz" / "last-run.json"


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory, corpus_uri: str) -> Iterator[LiveService]:
    """The service with the admin key set, over its own copy of the sample corpus, thresholds store and routing log:
    the fuzzer adds and deletes documents and sets thresholds, which other tests' servers must not see."""
    root = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(corpus_uri, root / "lancedb")
    settings = Settings(
        retrieval={"uri": str(root / "lancedb")},
        thresholds={"uri": str(root / "thresholds")},
        routing_log={"uri": str(root / "routing-log")},
        log={"format": "json", "level": "WARNING"},
        server={"admin_api_key": ADMIN_KEY, "max_query_chars": 500},
    )
    with serve(settings) as service:
        yield service


def fuzz_operation(operation: Any, mode: GenerationMode, url: str, session: requests.Session) -> tuple[int, str]:
    """Requests sent and the first failure ("" when none) for one operation in one generation mode."""
    sent = 0

    @settings(
        max_examples=EXAMPLES[mode],
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as generated
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        nonlocal sent
        sent += 1
        response = case.call(base_url=url, session=session, headers={"X-API-Key": ADMIN_KEY}, timeout=60)
        case.validate_response(response, checks=CHECKS)

    try:
        run()
    except Unsatisfiable:  # negative mode on an operation with nothing to break (no parameters, no body)
        return sent, ""
    except (Exception, BaseExceptionGroup) as exc:  # a check failed (schemathesis' FailureGroup is a
        # BaseExceptionGroup): keep fuzzing the other operations, report all failures at the end
        return sent, f"{operation.label} ({mode.value}): {exc}"
    return sent, ""


def test_no_server_errors_and_no_schema_violations(fuzzed: LiveService, capsys: pytest.CaptureFixture[str]) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzzed.url}/schema/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    started = time.perf_counter()
    sent, failures = 0, []
    with requests.Session() as session:
        for operation in operations:
            for mode in EXAMPLES:
                count, failure = fuzz_operation(operation, mode, fuzzed.url, session)
                sent += count
                failures += [failure] if failure else []
    seconds = time.perf_counter() - started
    report = {"operations": len(operations), "requests": sent, "seconds": round(seconds, 1), "failures": failures}
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2))
    with capsys.disabled():  # in the pytest output even when the test passes
        print(f"\nfuzz: {sent} requests over {len(operations)} operations in {seconds:.1f} s (report: {REPORT})")
    assert not failures, "\n\n".join(failures)
    assert len(operations) >= 19, [op.label for op in operations]
    assert sent >= MIN_REQUESTS
