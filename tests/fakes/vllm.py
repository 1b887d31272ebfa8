"""Fake vLLM OpenAI-compatible server for tests: an ``httpx.MockTransport`` handler (httpx + stdlib only).

Copied from vLLM 0.33.0 (latest on PyPI, 2026-11-02), sdist ``vllm-0.33.0.tar.gz``,
sha256 f4c33c2503d52bb411146afa9618a4f48bed68912f617e6803ac8d76e4c74112. Key order was checked against pydantic replicas
of the models below, and the 400 texts against vLLM's validation handler run under FastAPI 0.136. Files in the sdist:
  vllm/entrypoints/serve/engine/protocol.py          ErrorInfo/ErrorResponse, ModelCard, ModelPermission, UsageInfo
  vllm/entrypoints/openai/chat_completion/protocol.py ChatMessage, ChatCompletionResponse(+Choice), stream chunk models
  vllm/entrypoints/openai/chat_completion/{serving,api_router}.py  full + stream generators, JSON/SSE responses
  vllm/entrypoints/openai/models/{serving,api_router}.py            GET /v1/models (base + LoRA cards)
  vllm/entrypoints/serve/engine/serving.py            _check_model -> 404; chatcmpl id from X-Request-Id/request_id
  vllm/entrypoints/serve/exception_handling/{error_response,utils}.py, handlers/validation.py   error types, 400 text
  vllm/entrypoints/serve/middleware/authenticate.py   401; vllm/exceptions.py  GenerationError, QueueOverflowError
Shapes (bodies are compact JSON, ``content-type: application/json``):
  errors: {"error": {"message", "type", "param", "code"}}. Nested since v0.10.1 (PR #22099); before it was flat:
      {"object": "error", "message": ..., "type": ..., "param": null, "code": N}.
  401 (--api-key, paths /v1 /v2 /inference /cohere): {"error":"Unauthorized"}.
  404 unknown model: type "NotFoundError", param "model",
      message "The model `X` does not exist. Valid aliases: <base>." (older releases: no "Valid aliases" part).
  400 body validation (FastAPI RequestValidationError): type "Bad Request" (HTTP phrase, NOT "BadRequestError"),
      param = first error loc, e.g. "body.messages", message "1 validation error:\\n  {'type': 'missing', 'loc':
      'body.messages', 'msg': 'Field required', 'input': '<dict of 1 items>'}". A non-iterable ``messages`` (null, 5)
      breaks a before-validator with TypeError -> type "BadRequestError", message "'int' object is not iterable".
  500: GenerationError -> "InternalServerError" / "Internal server error". 503: QueueOverflowError (admission control)
      -> type "Service Unavailable" (RetryableRequestError would give "ServiceUnavailableError" / "Request failed;
      please retry"). Codes vLLM never sends itself (e.g. 429): type and message = the HTTP phrase, no Retry-After.
  Unknown route: 404 {"detail":"Not Found"}; wrong method: 405 {"detail":"Method Not Allowed"}.
  200 chat: ChatCompletionResponse.model_dump(), every field present (message.reasoning, not reasoning_content;
      tool_calls dropped when empty). system_fingerprint = "vllm-0.33.0-<hash8>".
  stream: ``content-type: text/event-stream; charset=utf-8``; ``data: {chunk}\\n\\n`` per chunk, dumped with
      exclude_unset (usage chunk also exclude_none): role chunk, content deltas, last delta + finish_reason, optional
      usage chunk (choices=[]), then ``data: [DONE]\\n\\n``. A mid-stream error is sent in the 200 stream as
      ``data: {"error":{"message":"...","type":"InternalServerError","param":null,"code":500}}`` then ``[DONE]``.
Faults (one consumed per request): ("status", N[, headers]), ("connect_error",), ("read_timeout",),
("stream_error", message). A stream_error hitting a non-streaming chat request returns vLLM's 500 JSON instead.
Token counts are fake (one token per word). Not modelled: n>1, tools, logprobs, message-element validation.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import httpx

VLLM_VERSION = "0.33.0"
Json = dict[str, Any]
Fault = tuple[Any, ...]

_GUARDED_PREFIX = ("/v1", "/v2", "/inference", "/cohere")
_ROUTES = {"/v1/models": "GET", "/v1/chat/completions": "POST", "/health": "GET"}
_TRUE_WORDS = frozenset({"1", "on", "t", "true", "y", "yes"})
_BOOL_WORDS = _TRUE_WORDS | {"0", "off", "f", "false", "n", "no"}
# Optional ChatCompletionRequest fields we type-check, in declaration order (pydantic reports errors in that order).
_FIELDS = (
    ("model", "str"),
    ("max_tokens", "int"),
    ("max_completion_tokens", "int"),
    ("n", "int"),
    ("stream", "bool"),
    ("temperature", "float"),
    ("top_p", "float"),
)
_MSG = {  # pydantic-core error messages
    "missing": "Field required",
    "model_attributes_type": "Input should be a valid dictionary or object to extract fields from",
    "list_type": "Input should be a valid list",
    "string_type": "Input should be a valid string",
    "bool_parsing": "Input should be a valid boolean, unable to interpret input",
    "bool_type": "Input should be a valid boolean",
    "int_from_float": "Input should be a valid integer, got a number with a fractional part",
    "int_parsing": "Input should be a valid integer, unable to parse string as an integer",
    "int_type": "Input should be a valid integer",
    "float_parsing": "Input should be a valid number, unable to parse string as a number",
    "float_type": "Input should be a valid number",
}
_PERMISSION = {  # ModelPermission defaults after id/object/created
    "allow_create_engine": False,
    "allow_sampling": True,
    "allow_logprobs": True,
    "allow_search_indices": False,
    "allow_view": True,
    "allow_fine_tuning": False,
    "organization": "*",
    "group": None,
    "is_blocking": False,
}
# status -> (error.type, error.message) as vLLM 0.33.0 raises them itself.
STATUS_ERRORS: dict[int, tuple[str, str]] = {
    500: ("InternalServerError", "Internal server error"),
    501: ("NotImplementedError", "The model does not support Chat Completions API"),
    503: (
        "Service Unavailable",
        "The engine is currently busy and cannot accept new requests. "
        "Please try again later or on a different instance.",
    ),
}


def _dumps(obj: object) -> bytes:  # == starlette JSONResponse.render / pydantic model_dump_json (compact, UTF-8)
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _random_uuid() -> str:  # vllm.utils.random_uuid: 16 hex chars
    return f"{uuid.uuid4().int & ((1 << 64) - 1):016x}"


def sanitize_message(message: str) -> str:
    message = re.sub(r" at 0x[0-9a-fA-F]+>", ">", message)
    message = re.sub(r'\n?\s*File "[^"]+", line \d+, in \S+(\n\s+.*)?', "", message)
    message = re.sub(r"/(?:home|usr|opt|var|tmp|root|lib|mnt|srv)(?:/[\w.\-]+)+", "<path>", message)
    message = re.sub(r"(?:/[\w\-]+)+/[\w\-]+\.\w+", "<path>", message)
    return message.strip()


def error_body(message: str, err_type: str, code: int, param: str | None = None) -> Json:
    return {"error": {"message": sanitize_message(message), "type": err_type, "param": param, "code": code}}


def _json(status: int, body: object, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers={"content-type": "application/json", **(headers or {})}, content=_dumps(body))


def _error(code: int, message: str, err_type: str, param: str | None = None) -> httpx.Response:
    return _json(code, error_body(message, err_type, code, param))


def _summarize(value: object) -> object:  # handlers/validation.py::_summarize_error_input
    if isinstance(value, list | dict):
        return f"<{type(value).__name__} of {len(value)} items>"
    text = value if isinstance(value, str) else str(value)
    return text[:200] + "...[truncated]" if len(text) > 200 else text


def _parses_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _lax_error(kind: str, value: object) -> str | None:
    """pydantic-core lax-mode error type for ``value`` in an optional field of ``kind``; None if accepted."""
    if value is None or (kind in ("int", "float") and isinstance(value, int)):
        return None
    if kind == "str":
        return None if isinstance(value, str) else "string_type"
    if kind == "bool":
        if isinstance(value, str):
            return None if value.lower() in _BOOL_WORDS else "bool_parsing"
        return ("bool_parsing" if value not in (0, 1) else None) if isinstance(value, int | float) else "bool_type"
    if isinstance(value, str):
        ok = re.fullmatch(r"\s*[+-]?\d+(\.0*)?\s*", value) is not None if kind == "int" else _parses_float(value)
        return None if ok else f"{kind}_parsing"
    if isinstance(value, float):
        return None if kind == "float" or value.is_integer() else "int_from_float"
    return f"{kind}_type"


def _err(err_type: str, loc: str, value: object) -> Json:  # one pydantic error, as FastAPI/vLLM print it
    return {"type": err_type, "loc": loc, "msg": _MSG[err_type], "input": _summarize(value)}


def _invalid(errors: list[Any]) -> httpx.Response:  # handlers/validation.py::validation_exception_handler
    label = "error" if len(errors) == 1 else "errors"
    message = f"{len(errors)} validation {label}:\n" + "".join(f"  {err}\n" for err in errors[:10])
    if len(errors) > 10:
        message += f"  ...and {len(errors) - 10} more {label}\n"
    param = errors[0]["loc"] if isinstance(errors[0], dict) else None
    return _error(400, message.rstrip(), HTTPStatus.BAD_REQUEST.phrase, param)


class _SSEStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    def __init__(self, events: list[bytes]) -> None:
        self._events = events

    def __iter__(self) -> Iterator[bytes]:
        yield from self._events

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for event in self._events:
            yield event


def _sse(data: object) -> bytes:
    return b"data: " + _dumps(data) + b"\n\n"


@dataclass
class FakeVLLM:
    base_model: str = "meta-llama/Llama-3.1-8B-Instruct"
    adapters: dict[str, str] = field(default_factory=lambda: {"support-ft": "/adapters/support-ft"})
    api_key: str | None = None
    reply: str = "Paris is the capital of France."
    faults: list[Fault] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    max_model_len: int = 131072

    @property
    def system_fingerprint(self) -> str:
        return f"vllm-{VLLM_VERSION}-{hashlib.sha256(self.base_model.encode()).hexdigest()[:8]}"

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        fault = self.faults.pop(0) if self.faults else None
        stream_error: str | None = None
        if fault is not None:
            if fault[0] == "connect_error":
                raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
            if fault[0] == "read_timeout":
                raise httpx.ReadTimeout("timed out", request=request)
            if fault[0] == "status":
                code, headers = int(fault[1]), dict(fault[2]) if len(fault) > 2 else {}
                if code == HTTPStatus.UNAUTHORIZED:
                    return _json(code, {"error": "Unauthorized"}, headers)
                phrase = HTTPStatus(code).phrase
                err_type, message = STATUS_ERRORS.get(code, (phrase, phrase))
                return _json(code, error_body(message, err_type, code), headers)
            if fault[0] != "stream_error":
                raise ValueError(f"unknown fault {fault!r}")
            stream_error = str(fault[1]) if len(fault) > 1 else "Internal server error"
        path, method = request.url.path, request.method
        if self.api_key is not None and method != "OPTIONS" and path.startswith(_GUARDED_PREFIX):
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or token != self.api_key:
                return _json(401, {"error": "Unauthorized"})
        if path not in _ROUTES:
            return _json(404, {"detail": "Not Found"})
        if method != _ROUTES[path]:
            return _json(405, {"detail": "Method Not Allowed"}, {"allow": _ROUTES[path]})
        if path == "/health":
            return httpx.Response(200)
        if path == "/v1/models":
            return _json(200, self.models())
        return self._chat(request, stream_error)

    def models(self) -> Json:
        now = int(time.time())

        def card(model_id: str, root: str, parent: str | None, max_len: int | None) -> Json:
            perm = {"id": f"modelperm-{_random_uuid()}", "object": "model_permission", "created": now} | _PERMISSION
            head = {"id": model_id, "object": "model", "created": now, "owned_by": "vllm", "root": root}
            return head | {"parent": parent, "max_model_len": max_len, "permission": [perm]}

        cards = [card(self.base_model, self.base_model, None, self.max_model_len)]
        cards += [card(name, root, self.base_model, None) for name, root in self.adapters.items()]
        return {"object": "list", "data": cards}

    def _chat(self, request: httpx.Request, stream_error: str | None) -> httpx.Response:
        media_type = request.headers.get("content-type", "").lower().split(";", 1)[0]
        if media_type != "application/json":
            return _invalid(["Unsupported Media Type: Only 'application/json' is allowed"])
        try:
            body = json.loads(request.content) if request.content else None
        except json.JSONDecodeError as exc:
            err = {"type": "json_invalid", "loc": f"body.{exc.pos}", "msg": "JSON decode error"}
            return _invalid([err | {"input": "<dict of 0 items>", "ctx": {"error": exc.msg}}])
        if body is None:
            return _invalid([_err("missing", "body", None)])
        if not isinstance(body, dict):
            return _invalid([_err("model_attributes_type", "body", body)])
        messages = body.get("messages", [])
        if not isinstance(messages, list | dict | str):  # check_system_message_content_type iterates it
            return _error(400, f"'{type(messages).__name__}' object is not iterable", "BadRequestError")
        if "messages" not in body:
            errors = [_err("missing", "body.messages", body)]
        else:
            errors = [] if isinstance(messages, list) else [_err("list_type", "body.messages", messages)]
        errors += [_err(e, f"body.{k}", body[k]) for k, kind in _FIELDS if (e := _lax_error(kind, body.get(k)))]
        if errors:
            return _invalid(errors)
        model = body.get("model")
        if model and model != self.base_model and model not in self.adapters:
            msg = f"The model `{model}` does not exist. Valid aliases: {self.base_model}."
            return _error(404, msg, "NotFoundError", "model")
        served = model if model in self.adapters else self.base_model
        rid = request.headers.get("x-request-id") or str(body.get("request_id") or _random_uuid())
        tokens = re.findall(r"\s*\S+", self.reply) or [""]
        prompt = sum(len(str(m.get("content", "")).split()) + 4 for m in messages if isinstance(m, dict))
        stream = body.get("stream")
        if not (stream.lower() in _TRUE_WORDS if isinstance(stream, str) else bool(stream)):
            if stream_error is not None:
                return _error(500, stream_error, "InternalServerError")
            return _json(200, self._completion(f"chatcmpl-{rid}", served, prompt, len(tokens)))
        opts = body.get("stream_options")
        usage_on = isinstance(opts, dict) and bool(opts.get("include_usage", True))
        continuous = usage_on and isinstance(opts, dict) and bool(opts.get("continuous_usage_stats", False))
        created = int(time.time())
        base = {"id": f"chatcmpl-{rid}", "object": "chat.completion.chunk", "created": created, "model": served}

        def chunk(delta: Json, done: int, finish: str | None, extra: Json, **tail: Any) -> bytes:
            data: Json = {
                **base,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish} | extra],
            }
            if continuous:
                usage = {"prompt_tokens": prompt, "total_tokens": prompt + done, "completion_tokens": done}
                data["usage"] = usage | {"completion_tokens_details": None}
            return _sse(data | tail)

        events = [chunk({"role": "assistant", "content": ""}, 0, None, {}, prompt_token_ids=None, prompt_text=None)]
        for i, tok in enumerate(tokens[:1] if stream_error is not None else tokens, start=1):
            if stream_error is None and i == len(tokens):  # the last delta carries finish_reason
                extra = dict.fromkeys(("stop_reason", "token_ids", "weight_versions"))
                fingerprint = {} if usage_on else {"system_fingerprint": self.system_fingerprint}
                events.append(chunk({"content": tok}, i, "stop", extra, **fingerprint, kv_transfer_params=None))
            else:
                events.append(chunk({"content": tok}, i, None, {"token_ids": None}, kv_transfer_params=None))
        if stream_error is not None:
            events.append(_sse(error_body(stream_error, "InternalServerError", 500)))
        elif usage_on:
            usage = {"prompt_tokens": prompt, "total_tokens": prompt + len(tokens), "completion_tokens": len(tokens)}
            events.append(_sse({**base, "choices": [], "usage": usage, "system_fingerprint": self.system_fingerprint}))
        events.append(b"data: [DONE]\n\n")
        headers = {"content-type": "text/event-stream; charset=utf-8"}
        return httpx.Response(200, headers=headers, stream=_SSEStream(events))

    def _completion(self, rid: str, model: str, prompt: int, completion: int) -> Json:
        nulls = dict.fromkeys  # fields vLLM sends as null
        message = {"role": "assistant", "content": self.reply} | nulls(
            ("refusal", "annotations", "audio", "function_call", "reasoning")  # tool_calls: dropped when empty
        )
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"} | nulls(
            ("stop_reason", "token_ids", "routed_experts", "weight_versions")
        )
        usage = {"prompt_tokens": prompt, "total_tokens": prompt + completion, "completion_tokens": completion} | nulls(
            ("prompt_tokens_details", "completion_tokens_details")
        )
        head = {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": model}
        return (
            head
            | {"choices": [choice], "service_tier": None, "system_fingerprint": self.system_fingerprint, "usage": usage}
            | nulls(("prompt_logprobs", "prompt_token_ids", "prompt_text", "kv_transfer_params", "ec_transfer_params"))
            | {"metrics": None}
        )
