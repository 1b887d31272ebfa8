"""Input limits over real HTTP (router.lib.limits): each bad input gets a 4xx whose body says what is wrong and carries
the request id, and the service keeps serving."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from router.lib.limits import MAX_JSON_DEPTH
from router.lib.settings import Settings
from tests.integration.conftest import LiveService, serve

ADMIN_KEY = "limits-admin-key-0123456789"
BODY_LIMIT = 4096
DOCUMENTS_LIMIT = 16384
ADMIN = {"X-API-Key": ADMIN_KEY}
CHAT = {"model": "router", "messages": [{"role": "user", "content": "What is LoRA?"}]}


@pytest.fixture(scope="module")
def limited(corpus_uri: str) -> Iterator[LiveService]:
    """The service with small body limits and the admin key, over the shared (read-only) sample corpus."""
    settings = Settings(
        retrieval={"uri": corpus_uri},
        log={"format": "json"},
        server={
            "admin_api_key": ADMIN_KEY,
            "max_body_bytes": BODY_LIMIT,
            "max_document_body_bytes": DOCUMENTS_LIMIT,
            "max_query_chars": 500,
        },
    )
    with serve(settings) as service:
        yield service


@pytest.fixture
def client(limited: LiveService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=limited.url, timeout=30) as http:
        yield http


def problem(response: httpx.Response, status: int, *reasons: str) -> dict:
    """The problem-details body, checked: status, content type, the request id, and each reason in the detail."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["request_id"] == response.headers["x-request-id"]
    for reason in reasons:
        assert reason in body["detail"], body
    return body


def openai_problem(response: httpx.Response, status: int, *reasons: str) -> None:
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    for reason in reasons:
        assert reason in message, message


def padded(size: int) -> bytes:
    """A valid /v1/route body of exactly ``size`` bytes."""
    head, tail = b'{"query": "what is lora?', b'"}'
    return head + b" " * (size - len(head) - len(tail)) + tail


def test_a_body_at_the_limit_passes_and_one_byte_more_is_413(client: httpx.Client) -> None:
    json_type = {"content-type": "application/json"}
    assert client.post("/v1/route", content=padded(BODY_LIMIT), headers=json_type).status_code == 200
    over = client.post("/v1/route", content=padded(BODY_LIMIT + 1), headers=json_type)
    problem(over, 413, f"larger than {BODY_LIMIT} bytes", "server.max_body_bytes")


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/query"), ("PUT", "/v1/thresholds"), ("POST", "/v1/thresholds/evaluate")],
)
def test_every_body_endpoint_has_the_limit(client: httpx.Client, method: str, path: str) -> None:
    big = {"query": "x" * BODY_LIMIT, "note": "x" * BODY_LIMIT}
    problem(client.request(method, path, json=big, headers=ADMIN), 413, str(BODY_LIMIT))


def test_the_openai_front_door_has_the_limit_in_its_own_error_body(client: httpx.Client) -> None:
    big = CHAT | {"messages": [{"role": "user", "content": "x" * BODY_LIMIT}]}
    openai_problem(client.post("/v1/chat/completions", json=big), 413, f"larger than {BODY_LIMIT} bytes")


def test_a_chunked_body_without_content_length_is_cut_off(client: httpx.Client) -> None:
    sent = []

    def chunks() -> Iterator[bytes]:
        yield b'{"query": "'
        for _ in range(1000):  # 1 MB in all, far past the limit
            sent.append(1)
            yield b"x" * 1000

    response = client.post("/v1/route", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    problem(response, 413, str(BODY_LIMIT))


def test_the_documents_api_has_its_own_larger_limit(client: httpx.Client) -> None:
    text = "x" * (BODY_LIMIT * 2)  # over the general limit, under the documents one: validated, not refused
    empty_id = client.post("/v1/documents", json={"documents": [{"id": " ", "text": text}]}, headers=ADMIN)
    problem(empty_id, 400, "empty or whitespace")
    huge = client.post("/v1/documents", json={"documents": [{"id": "a", "text": "x" * DOCUMENTS_LIMIT}]}, headers=ADMIN)
    problem(huge, 413, str(DOCUMENTS_LIMIT), "server.max_document_body_bytes")


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"]
)
def test_a_body_that_is_not_json_is_415(client: httpx.Client, content_type: str) -> None:
    response = client.post("/v1/route", content=b'{"query": "what is lora?"}', headers={"content-type": content_type})
    problem(response, 415, "application/json", content_type)


def test_json_content_types_and_none_are_accepted(client: httpx.Client) -> None:
    for headers in ({"content-type": "application/json; charset=UTF-8"}, {"content-type": "application/merge+json"}):
        assert client.post("/v1/route", content=b'{"query": "lora"}', headers=headers).status_code == 200
    bare = client.post("/v1/route", content=b'{"query": "lora"}')  # httpx sends no Content-Type for raw bytes
    assert "content-type" not in bare.request.headers and bare.status_code == 200


def test_deeply_nested_json_is_refused_at_once(client: httpx.Client, http: httpx.Client) -> None:
    started = time.perf_counter()
    levels = 10_000  # 20 kB, under the default body limit; msgspec stops at its recursion limit: 400, no crash
    deep = http.post("/v1/route", content=b"[" * levels + b"]" * levels, headers={"content-type": "application/json"})
    problem(deep, 400, "nested more than")
    assert time.perf_counter() - started < 2
    nested: object = "lora"
    for _ in range(MAX_JSON_DEPTH):
        nested = [nested]
    body = {"query": "lora", "retrieval": {"filters": {"doc_id": nested}}}
    problem(client.post("/v1/query", json=body), 400, f"nested more than {MAX_JSON_DEPTH} levels")
    assert client.get("/health").status_code == 200


def test_invalid_utf8_is_400(client: httpx.Client) -> None:
    response = client.post("/v1/route", content=b'{"query": "\xff\xfe"}', headers={"content-type": "application/json"})
    problem(response, 400, "the body is not valid UTF-8: byte 0xff at position 11")


def test_malformed_and_empty_bodies_are_400_with_a_reason(client: httpx.Client) -> None:
    json_type = {"content-type": "application/json"}
    problem(client.post("/v1/route", content=b'{"query": "x"', headers=json_type), 400, "the body is not valid JSON")
    problem(client.post("/v1/route", content=b"", headers=json_type), 400, "body is empty")


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f"])
def test_control_characters_in_query_text_are_400_naming_the_field(client: httpx.Client, char: str) -> None:
    code = f"U+{ord(char):04X}"
    problem(client.post("/v1/route", json={"query": f"what{char} is lora"}), 400, "query", code, "position 4")
    problem(client.post("/v1/query", json={"query": f"lora{char}"}), 400, "query", code)
    chat = CHAT | {"messages": [{"role": "system", "content": f"be{char}brief"}, *CHAT["messages"]]}
    openai_problem(client.post("/v1/chat/completions", json=chat), 400, "messages[0].content", code)


def test_tabs_and_newlines_in_query_text_are_fine(client: httpx.Client) -> None:
    assert client.post("/v1/route", json={"query": "what is\tlora?\r\nand rag?"}).status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/route", {"query": "lora", "verbose": True}, "'verbose' is not a known field"),
        ("/v1/query", {"query": "lora", "retrieval": {"filters": {"author": "x"}}}, "'author' is not a known field"),
        ("/v1/thresholds/rollback", {"version": 1, "force": True}, "'force' is not a known field"),
        ("/v1/documents/delete", {"ids": ["a"], "all": True}, "'all' is not a known field"),
    ],
)
def test_unknown_fields_are_400_naming_them(client: httpx.Client, path: str, body: dict, field: str) -> None:
    problem(client.post(path, json=body, headers=ADMIN), 400, "the request is invalid", field)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/route", {"query": ["lora"]}, "query"),
        ("/v1/query", {"query": "lora", "stream": "maybe"}, "stream"),
        ("/v1/query", {"query": "lora", "retrieval": {"mode": 3}}, "retrieval"),
        ("/v1/thresholds/evaluate", {"window": "ten"}, "window"),
    ],
)
def test_wrong_types_are_400_naming_the_field(client: httpx.Client, path: str, body: dict, field: str) -> None:
    problem(client.post(path, json=body, headers=ADMIN), 400, "the request is invalid", field, "must be")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"query": "lora", "top_k": 0}, "top_k: must be at least 1"),
        ({"query": "lora", "top_k": 51}, "top_k: must be at most 50"),
        ({"query": "lora", "cost_weight": -0.5}, "cost_weight: must be at least 0"),
        ({"query": "lora", "cost_weight": 10.5}, "cost_weight: must be at most 10"),
    ],
)
def test_top_k_and_knob_bounds_are_400_naming_them(client: httpx.Client, body: dict, reason: str) -> None:
    problem(client.post("/v1/query", json=body), 400, reason)


def test_a_number_out_of_float_range_is_400(client: httpx.Client) -> None:
    body = b'{"query": "lora", "cost_weight": 1e999}'
    problem(client.post("/v1/query", content=body, headers={"content-type": "application/json"}), 400, "not valid JSON")


def test_openai_router_options_have_the_same_bounds(client: httpx.Client) -> None:
    bad = CHAT | {"router": {"top_k": 99}}
    openai_problem(client.post("/v1/chat/completions", json=bad), 400, "router.top_k: must be at most 50")


def test_the_openai_front_door_accepts_what_openai_clients_send(client: httpx.Client) -> None:
    sent_by_clients = {
        "user": "u-1",
        "seed": 7,
        "metadata": {"team": "search"},
        "store": False,
        "service_tier": "auto",
        "parallel_tool_calls": True,
        "logprobs": False,
        "stream_options": None,
        "n": 1,
    }
    assert client.post("/v1/chat/completions", json=CHAT | sent_by_clients).status_code == 200
    openai_problem(client.post("/v1/chat/completions", json=CHAT | {"logprobs": True}), 400, "logprobs")
    openai_problem(
        client.post("/v1/chat/completions", json=CHAT | {"temperatur": 0}), 400, "'temperatur' is not a known field"
    )


def test_error_responses_are_documented_in_the_openapi_schema(client: httpx.Client) -> None:
    paths = client.get("/schema/openapi.json").json()["paths"]
    route = paths["/v1/route"]["post"]["responses"]
    assert {"400", "413", "415", "429"} <= set(route)
    assert "application/problem+json" in route["413"]["content"]
    assert {"401", "403"} <= set(paths["/v1/documents"]["post"]["responses"])
    chat = paths["/v1/chat/completions"]["post"]["responses"]
    assert "application/json" in chat["400"]["content"] and "text/event-stream" in chat["200"]["content"]


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/v1/routing-logs?cursor=9999999999999999999", "cursor 9999999999999999999 is not one this service returned"),
        ("/v1/routing-logs?limit=0", "limit: must be at least 1"),
        ("/v1/stats?window=99999999d", "window must be between 60 s and 90 days"),
        ("/v1/routing-logs?min_ft=nan", "min_ft: must be at least 0"),
    ],
)
def test_query_parameters_are_bounded_at_the_edge(client: httpx.Client, path: str, reason: str) -> None:
    """Numbers the parser takes but the code behind cannot use are 400 at the edge, never a 500 from deep inside."""
    problem(client.get(path, headers=ADMIN), 400, reason)
