"""Documents over HTTP: the admin key, idempotent adds, replacement, deletion, validation, and a log without keys.

One server with an admin key runs for the module, over a copy of the sample corpus table; each test uses its own
document ids. The session's ``live`` server has no key configured.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from router.lib.settings import Settings
from tests.integration.conftest import LiveService, serve

KEY = "test-admin-key-7c1f9e2ab04d"
WRONG_KEY = "wrong-admin-key-55aa01"
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_DOCUMENTS = 3
MAX_CHARS = 3000

ZORBLAX = (
    "# Zorblax relay handbook\n\n"
    "The Zorblax relay rotates its quartz hummingbird keys every seventeen minutes.\n\n"
    "## Storage\n\nRelay logs are kept in the basement vault beside the tangerine archive."
)
OTHER = "Frobnicated widgets are polished with walnut oil before the autumn fair."


@pytest.fixture(scope="module")
def admin(live: LiveService, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """The service with an admin key, over a copy of the session server's table (the sample corpus)."""
    uri = tmp_path_factory.mktemp("admin-lancedb") / "db"
    shutil.copytree(Path(live.settings.retrieval.uri), uri)
    settings = Settings(
        retrieval={"uri": str(uri), "max_documents_per_request": MAX_DOCUMENTS, "max_document_chars": MAX_CHARS},
        log={"format": "json"},
        server={"admin_api_key": KEY},
    )
    with serve(settings) as service:
        yield service


@pytest.fixture
def client(admin: LiveService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=admin.url, timeout=60, headers=AUTH) as http:
        yield http


def post_documents(client: httpx.Client, *documents: dict[str, str]) -> dict:
    response = client.post("/v1/documents", json={"documents": list(documents)})
    assert response.status_code == 200, response.text
    return response.json()


def query_sources(client: httpx.Client, query: str, top_k: int = 4) -> list[dict]:
    response = client.post("/v1/query", json={"query": query, "route": "rag", "top_k": top_k})
    assert response.status_code == 200, response.text
    return response.json()["sources"]


def assert_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["request_id"] == response.headers["x-request-id"]
    return body


def test_admin_endpoints_answer_403_while_no_key_is_configured(http: httpx.Client) -> None:
    document = {"documents": [{"id": "x", "text": "some text"}]}
    for response in (
        http.post("/v1/documents", json=document, headers=AUTH),
        http.get("/v1/documents/x", headers=AUTH),
        http.delete("/v1/documents/x"),
        http.post("/v1/documents/delete", json={"ids": ["x"]}),
    ):
        body = assert_problem(response, 403)
        assert "ROUTER_SERVER__ADMIN_API_KEY" in body["detail"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": f"Bearer {WRONG_KEY}"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": f"Bearer {KEY}x"},
        {"X-API-Key": WRONG_KEY},
    ],
)
def test_a_missing_or_wrong_key_gets_401_with_a_challenge(admin: LiveService, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=admin.url, timeout=30, headers=headers) as http:
        responses = [
            http.post("/v1/documents", json={"documents": [{"id": "x", "text": "t"}]}),
            http.post("/v1/documents", json={"not": "even valid"}),  # the guard runs before the body is read
            http.get("/v1/documents/x"),
            http.delete("/v1/documents/x"),
        ]
    for response in responses:
        assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_the_key_is_accepted_in_either_header(admin: LiveService) -> None:
    for headers in (AUTH, {"Authorization": f"bearer {KEY}"}, {"X-API-Key": KEY}):
        response = httpx.get(f"{admin.url}/v1/documents/absent-doc", headers=headers, timeout=30)
        assert_problem(response, 404)  # past the guard: the document does not exist


def test_added_documents_answer_queries_and_reposting_changes_nothing(client: httpx.Client) -> None:
    zorblax = {"id": "zorblax-handbook", "text": ZORBLAX}
    other = {"id": "widgets", "text": OTHER, "title": "Widget care", "uri": "https://example.com/widgets"}
    first = post_documents(client, zorblax, other)
    assert [(r["id"], r["status"]) for r in first["results"]] == [("zorblax-handbook", "added"), ("widgets", "added")]
    assert first["added"] == 2 and first["documents"] == 2 and first["unchanged"] == first["updated"] == 0
    assert all(r["chunks"] >= 1 for r in first["results"])
    assert first["chunks_written"] == sum(r["chunks"] for r in first["results"])

    top = query_sources(client, "How often does the Zorblax relay rotate its hummingbird keys?")[0]
    assert top["document_id"] == "zorblax-handbook" and "seventeen minutes" in top["text"]
    assert top["title"] == "Zorblax relay handbook"  # the first heading
    assert top["uri"] == "urn:router:document:zorblax-handbook"
    widgets = query_sources(client, "What are frobnicated widgets polished with?")[0]
    assert widgets["document_id"] == "widgets" and widgets["title"] == "Widget care"
    assert widgets["uri"] == "https://example.com/widgets"

    again = post_documents(client, zorblax, other)
    assert [r["status"] for r in again["results"]] == ["unchanged", "unchanged"]
    assert [r["chunks"] for r in again["results"]] == [r["chunks"] for r in first["results"]]
    assert again["chunks_written"] == 0 and again["total_chunks"] == first["total_chunks"]

    info = client.get("/v1/documents/zorblax-handbook").json()
    assert info["id"] == "zorblax-handbook" and info["title"] == "Zorblax relay handbook"
    assert info["chunks"] == first["results"][0]["chunks"] and len(info["content_sha256"]) == 64
    assert info["ingested_at"].startswith("20")


def test_a_changed_document_replaces_all_its_chunks(client: httpx.Client) -> None:
    sections = "\n\n".join(f"## Part {n}\n\nThe saffron lighthouse keeper counts {n} herons." for n in range(4))
    before = post_documents(client, {"id": "lighthouse", "text": f"# Lighthouse\n\n{sections}"})
    old = before["results"][0]
    assert old["status"] == "added" and old["chunks"] == 4  # a heading starts a chunk
    old_hash = client.get("/v1/documents/lighthouse").json()["content_sha256"]

    after = post_documents(client, {"id": "lighthouse", "text": "The lighthouse was sold to a marmalade company."})
    assert after["results"] == [{"id": "lighthouse", "status": "updated", "chunks": 1}]
    assert after["updated"] == 1 and after["total_chunks"] == before["total_chunks"] - 3
    info = client.get("/v1/documents/lighthouse").json()
    assert info["chunks"] == 1 and info["content_sha256"] != old_hash
    sources = query_sources(client, "How many herons does the saffron lighthouse keeper count?", top_k=50)
    assert all(s["id"] == "lighthouse#0" for s in sources if s["document_id"] == "lighthouse")
    assert not any("saffron lighthouse keeper" in s["text"] for s in sources)


def test_a_deleted_document_leaves_the_query_results(client: httpx.Client) -> None:
    text = "Glimmerfen otters trade polished pebbles for cloudberries at the winter market."
    added = post_documents(client, {"id": "otters", "text": text})["results"][0]
    question = "What do glimmerfen otters trade for cloudberries?"
    assert query_sources(client, question)[0]["document_id"] == "otters"

    deleted = client.delete("/v1/documents/otters")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"id": "otters", "deleted_chunks": added["chunks"]}
    assert all(s["document_id"] != "otters" for s in query_sources(client, question, top_k=50))
    assert "otters" in assert_problem(client.get("/v1/documents/otters"), 404)["detail"]
    assert "otters" in assert_problem(client.delete("/v1/documents/otters"), 404)["detail"]


def test_any_id_can_be_deleted_through_the_body(client: httpx.Client) -> None:
    doc_id = "/srv/docs/tea guide.md"  # file-ingested ids are absolute paths
    added = post_documents(client, {"id": doc_id, "text": "Oolong is steeped at ninety degrees."})["results"][0]
    assert client.get(f"/v1/documents/{doc_id.replace('/', '%2F')}").status_code == 404  # %2F is decoded: no route
    response = client.post("/v1/documents/delete", json={"ids": [doc_id, "never-added"]})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "results": [
            {"id": doc_id, "status": "deleted", "deleted_chunks": added["chunks"]},
            {"id": "never-added", "status": "not_found", "deleted_chunks": 0},
        ],
        "deleted_chunks": added["chunks"],
    }


def doc(doc_id: str = "d", text: str = "Some text.", **extra: object) -> dict[str, object]:
    return {"id": doc_id, "text": text, **extra}


@pytest.mark.parametrize(
    ("path", "payload", "reason"),
    [
        ("/v1/documents", {"documents": []}, "'documents' holds 0 items; send 1 to 3"),
        ("/v1/documents", {"documents": [doc("a"), doc("b"), doc("c"), doc("d")]}, "holds 4 items; send 1 to 3"),
        ("/v1/documents", {"documents": [doc("a"), doc("b"), doc("a")]}, "documents[2]: id 'a' appears more than once"),
        ("/v1/documents", {"documents": [doc("a"), doc("b", "  \n ")]}, "documents[1] (id 'b'): 'text' is empty"),
        ("/v1/documents", {"documents": [doc("a"), doc("")]}, "documents[1]: the id is empty"),
        ("/v1/documents", {"documents": [doc(" a")]}, "documents[0] (id ' a'): the id has leading or trailing"),
        ("/v1/documents", {"documents": [doc("a", "x" * 3001)]}, "'text' is 3001 characters; the limit is 3000"),
        ("/v1/documents", {"documents": [doc("a", author="me")]}, "documents[0]: 'author' is not a known field"),
        ("/v1/documents", {"documents": [doc()], "replace": True}, "'replace' is not a known field"),
        ("/v1/documents", {"documents": [{"id": "a"}]}, "documents[0]: 'text' is required"),
        ("/v1/documents", {"documents": [doc("a", 42)]}, "documents[0].text: must be a string, not an integer"),
        ("/v1/documents", {}, "'documents' is required"),
        ("/v1/documents/delete", {"ids": []}, "'ids' holds 0 items"),
        ("/v1/documents/delete", {"ids": ["a", "a"]}, "ids[1]: id 'a' appears more than once"),
        ("/v1/documents/delete", {"ids": [" "]}, "ids[0]: the id is empty"),
    ],
)
def test_bad_bodies_get_400_with_a_reason(client: httpx.Client, path: str, payload: dict, reason: str) -> None:
    body = assert_problem(client.post(path, json=payload), 400)
    assert reason in body["detail"] + str(body.get("errors", ""))


def test_documents_endpoints_are_in_the_openapi_schema(client: httpx.Client) -> None:
    paths = client.get("/schema/openapi.json").json()["paths"]
    assert {"/v1/documents", "/v1/documents/delete", "/v1/documents/{doc_id}"} <= set(paths)


def test_the_key_never_reaches_the_log(admin: LiveService, client: httpx.Client) -> None:
    post_documents(client, {"id": "log-check", "text": "A line about logging."})
    httpx.post(f"{admin.url}/v1/documents", json={}, headers={"X-API-Key": WRONG_KEY}, timeout=30)
    httpx.get(f"{admin.url}/v1/documents/log-check", headers={"Authorization": f"Bearer {WRONG_KEY}"}, timeout=30)
    log = admin.log.getvalue()
    assert admin.events("documents_ingested") and admin.events("admin_access_denied")  # this server's lines
    assert {e["reason"] for e in admin.events("admin_access_denied")} >= {"wrong_key"}
    assert KEY not in log and WRONG_KEY not in log
    assert "test-admin-key" not in log  # not even a prefix of it
