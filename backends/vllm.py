"""Client for an OpenAI-compatible chat server, as vLLM serves it (``/v1/chat/completions``, ``/v1/models``).

The caller owns the ``httpx.AsyncClient`` (connection pool, timeouts, transport), so tests can hand in an
``httpx.MockTransport``. Every error shape vLLM returns is turned into a :mod:`backends.errors` exception:
``{"error": {"message", "type", "param", "code"}}`` bodies, the older flat ``{"object": "error", ...}`` body, the
plain ``{"error": "Unauthorized"}`` 401, and non-JSON bodies from other servers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from backends.errors import BackendTimeout, BackendUnavailable, ModelNotFound, UpstreamError

BACKEND = "llm"


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None


def error_details(response: httpx.Response) -> dict[str, Any]:
    """``message``/``type``/``param``/``code`` from any error body vLLM (or a similar server) sends."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {"message": response.text.strip()[:500] or response.reason_phrase}
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, str):  # vLLM's 401: {"error": "Unauthorized"}
            return {"message": error}
        if isinstance(error, dict) and "message" in error:
            return {key: error.get(key) for key in ("message", "type", "param", "code")}
        if "detail" in body:  # FastAPI-style servers
            return {"message": str(body["detail"])}
    return {"message": str(body)[:500]}


def raise_for_error(response: httpx.Response, model: str | None) -> None:
    if response.is_success:
        return
    details = error_details(response)
    message = str(details.get("message") or response.reason_phrase)
    error_class = ModelNotFound if response.status_code == 404 and model else UpstreamError
    if error_class is ModelNotFound:
        message = f"the LLM server does not serve model {model!r} (check the model/adapter name): {message}"
    raise error_class(
        message,
        backend=BACKEND,
        status=response.status_code,
        error_type=details.get("type"),
        param=details.get("param"),
        code=details.get("code"),
    )


class ChatClient:
    """Chat completions against one OpenAI-compatible base URL (ending in ``/v1``)."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, api_key: str | None = None) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def _send(self, method: str, path: str, model: str | None, payload: Any = None) -> httpx.Response:
        url = f"{self._base_url}{path}"
        try:
            response = await self._http.request(method, url, json=payload, headers=self._headers)
        except httpx.TimeoutException as exc:
            raise BackendTimeout(f"LLM server timed out on {path} ({type(exc).__name__})", backend=BACKEND) from exc
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"LLM server unreachable at {url}: {exc}", backend=BACKEND) from exc
        raise_for_error(response, model)
        return response

    async def list_models(self) -> list[dict[str, Any]]:
        """The served models; vLLM lists each LoRA adapter with ``parent`` set to its base model."""
        body = (await self._send("GET", "/models", None)).json()
        return list(body.get("data", []))

    async def chat(self, model: str, messages: list[ChatMessage], *, max_tokens: int, temperature: float) -> Completion:
        payload = {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        body = (await self._send("POST", "/chat/completions", model, payload)).json()
        try:
            choice = body["choices"][0]
            usage = body.get("usage") or {}
            return Completion(
                text=str(choice["message"].get("content") or ""),
                model=str(body.get("model", model)),
                finish_reason=choice.get("finish_reason"),
                prompt_tokens=usage.get("prompt_tokens"),
                completion_tokens=usage.get("completion_tokens"),
            )
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise UpstreamError(f"malformed chat completion: {exc!r}", backend=BACKEND, status=200) from exc
