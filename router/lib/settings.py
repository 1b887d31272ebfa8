"""All settings, in one typed object read from ``ROUTER_*`` environment variables (``__`` separates sections).

Example: ``ROUTER_LLM__BASE_URL=http://vllm:8000/v1`` sets ``settings.llm.base_url``; ``null`` sets a field to None
(``ROUTER_ROUTING_LOG__MAX_RECORDS=null``: no cap). The documentation's settings reference is generated from this
file (each field's ``description``), so it cannot drift from it.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.sources import NestedSecretsSettingsSource

from models.bundle import default_bundle_dir
from models.policy import MAX_COST_WEIGHT
from models.routes import Route, Step

_CLIENT_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
SECRETS_DIR = Path("/run/secrets/router")
"""Where secret files are read from (``ROUTER_SECRETS_DIR`` overrides it): one file per setting, named like its
environment variable (``ROUTER_SERVER__ADMIN_API_KEY``), holding the value. A missing directory is no error."""


def _padded(key: SecretStr) -> bool:
    value = key.get_secret_value()
    return value != value.strip()


class ServerSettings(BaseModel):
    host: str = Field("127.0.0.1", description="address `router serve` binds (its --host overrides it)")
    port: int = Field(8000, ge=1, le=65535, description="port `router serve` binds (its --port overrides it)")
    max_query_chars: int = Field(2000, ge=1, description="longer queries are rejected with 400")
    max_body_bytes: int = Field(
        1_048_576,
        ge=1024,
        description="largest request body in bytes (1 MiB), announced by Content-Length or counted while a chunked "
        "body streams in; larger ones get 413",
    )
    max_document_body_bytes: int = Field(
        16_777_216,
        ge=1024,
        description="largest body of the documents API in bytes (16 MiB): room for one document of "
        "retrieval.max_document_chars (1,000,000 characters, up to 4 MB of UTF-8, 6 MB JSON-escaped); larger ones "
        "get 413, so a batch of many large documents is split over several requests",
    )
    max_connections: int = Field(
        1024,
        ge=8,
        description="open HTTP connections the server holds; past it, the oldest connection with no request in "
        "flight (idle, or still sending its headers) is closed to make room, and when every connection has a request "
        "in flight the new one gets 503 (router.server.http)",
    )
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="a request's line and headers must arrive within this many seconds of the connection opening "
        "(or of the previous response on a kept-alive connection); later: 408 and the connection is closed",
    )
    body_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="a request's body must arrive within this many seconds of its headers (a 16 MiB document at "
        "0.3 MB/s); later, the connection is closed and the request is not served",
    )
    keep_alive_seconds: int = Field(
        5, ge=1, description="an idle kept-alive connection is closed after this many seconds without a new request"
    )
    max_header_bytes: int = Field(
        16_384, ge=1024, description="largest request line and headers together, in bytes; larger: 431"
    )
    max_headers: int = Field(100, ge=8, description="most header fields a request may have; more: 431")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are "
        'believed, JSON (["10.0.0.0/8"]); empty = the connection\'s own address is the client (rate limits, logs), '
        "whatever those headers say; * trusts every peer",
    )
    shutdown_timeout_seconds: float = Field(
        20.0,
        gt=0,
        description="on SIGTERM, requests still running after this many seconds are cancelled (incomplete ones "
        "are dropped) and the routing log is flushed; keep it under the Deployment's grace period (40 s)",
    )
    admin_api_key: SecretStr | None = Field(
        None,
        description="key for the admin endpoints (documents, thresholds changes), sent as "
        "'Authorization: Bearer <key>' or 'X-API-Key: <key>'; at least 16 characters; None = they answer 403",
    )
    environment: Literal["development", "staging", "production"] = Field(
        "development",
        description="outside development the service refuses to start on a placeholder or weak key (router.lib.auth)",
    )
    client_api_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="callers of the query endpoints (/v1/route, /v1/query, /v1/chat/completions, /v1/models) by "
        'name, {"name": "key"} (JSON), each key at least 16 characters; the name is the caller\'s identity in rate '
        "limits and logs; empty = the query endpoints are open and limited per client IP",
    )

    @model_validator(mode="after")
    def _client_keys_usable(self) -> ServerSettings:
        seen = {self.admin_api_key.get_secret_value()} if self.admin_api_key else set()
        if self.admin_api_key and len(self.admin_api_key.get_secret_value()) < 16:
            raise ValueError("server.admin_api_key: a key needs at least 16 characters")
        if self.admin_api_key and _padded(self.admin_api_key):
            raise ValueError("server.admin_api_key has leading or trailing whitespace, which no client would send")
        for name, key in self.client_api_keys.items():
            if _padded(key):
                raise ValueError(f"server.client_api_keys[{name!r}] has leading or trailing whitespace")
            if not _CLIENT_NAME.match(name):
                raise ValueError(f"server.client_api_keys: name {name!r} must be 1-64 of A-Za-z0-9._-")
            if len(key.get_secret_value()) < 16:
                raise ValueError(f"server.client_api_keys[{name!r}]: a key needs at least 16 characters")
            if key.get_secret_value() in seen:
                raise ValueError(f"server.client_api_keys[{name!r}]: every key (the admin key too) must differ")
            seen.add(key.get_secret_value())
        return self


class EmbedderSettings(BaseModel):
    path: Path | None = Field(
        None, description="local sentence-transformers model directory; None = the bundled all-MiniLM-L6-v2"
    )
    backend: Literal["onnx", "torch"] = Field(
        "onnx",
        description="onnx: the model exported to ONNX, run by ONNX Runtime (same vectors, ~3x faster, no "
        "torch at serve time); torch: sentence-transformers",
    )
    precision: Literal["fp32", "int8"] = Field(
        "fp32",
        description="onnx only; int8 (per-channel dynamic quantisation) is ~2x faster again, but its vectors differ "
        "(cosine ~0.99 to fp32), so a bundle trained on fp32 vectors then decides slightly differently",
    )
    onnx_dir: Path | None = Field(
        None,
        description="the ONNX export; None = var/embedders/<model>-<fingerprint>; made at start when missing (needs "
        "torch, a few seconds); `make setup` and `router embedder export` make it ahead of time",
    )
    device: str = Field("cpu", description="torch only: the torch device")
    batch_size: int = Field(
        64, ge=1, description="texts per forward pass when embedding documents or datasets (ingestion, training)"
    )
    threads: int = Field(0, ge=0, description="onnx: threads of one forward pass; 0 = one per core")
    max_batch: int = Field(
        8,
        ge=1,
        description="most concurrent queries decided in one forward pass; small passes pad less and pipeline with "
        "the HTTP work (measured on 2 cores: 8 beat 16, 32 and 64 in throughput and p99)",
    )
    max_queue: int = Field(
        256,
        ge=1,
        description="queries waiting to be decided past which a request is answered 503 with Retry-After at once "
        "(load shedding); 256 is about a second of waiting on 2 cores",
    )
    max_wait_ms: float = Field(
        0.0,
        ge=0,
        le=100,
        description="milliseconds a batch waits for more queries before it starts (0-100); 0 = none: a lone query "
        "never waits, and batches still form while the previous one runs",
    )


class ModelSettings(BaseModel):
    bundle_dir: Path = Field(
        default_factory=default_bundle_dir,
        description="router bundle directory; default: models/default_bundle, inside the installed package",
    )
    thresholds_file: Path | None = Field(
        None,
        description="thresholds file loaded at start, which seeds the thresholds store; None = thresholds.json "
        "inside the bundle",
    )


class RetrievalSettings(BaseModel):
    uri: str = Field(
        "var/lancedb",
        description="LanceDB URI of the documents: a local directory (relative to the working directory) or "
        "s3://bucket/prefix",
    )
    table: str = Field("chunks", description="table name of the document chunks")
    top_k: int = Field(4, ge=1, le=50, description="passages retrieved when a request gives no top_k (1-50)")
    chunk_max_chars: int = Field(
        1000, ge=200, description="largest chunk, in characters, written by `router ingest` and POST /v1/documents"
    )
    chunk_overlap_chars: int = Field(
        150, ge=0, description="most text, in characters, repeated between consecutive chunks"
    )
    max_documents_per_request: int = Field(
        100, ge=1, description="most documents (or ids to delete) in one documents API request"
    )
    max_document_chars: int = Field(1_000_000, ge=1, description="longest document text POST /v1/documents accepts")
    read_consistency_seconds: float = Field(
        5.0,
        ge=0,
        description="seconds the service may take to see rows written by another process: how stale a replica's "
        "view of the table may be",
    )
    storage_options: dict[str, str] = Field(
        default_factory=dict,
        description='LanceDB object-store options (JSON), e.g. {"aws_endpoint": "http://127.0.0.1:9000", '
        '"aws_region": "us-east-1", "allow_http": "true"}; credentials also come from the usual AWS_* variables',
    )
    mode: Literal["vector", "text", "hybrid"] = Field(
        "vector",
        description="search mode when a request names none: vector (cosine similarity), text (BM25) or hybrid "
        "(both, fused by reciprocal rank)",
    )
    index_threshold: int = Field(
        50_000,
        ge=1,
        description="chunks from which the ANN vector index (IVF_SQ) is built; below it vector search is exact",
    )
    max_concurrency: int = Field(32, ge=1, description="concurrent searches; more wait up to queue_timeout")
    queue_timeout: float = Field(
        0.5, ge=0, description="seconds a search waits for a slot before failing over (reason saturated)"
    )


DEFAULT_FALLBACKS: dict[Route, list[Step]] = {
    "ft": ["both", "rag", "extractive"],
    "both": ["rag", "ft", "extractive"],
    "rag": ["both", "ft", "extractive"],
}


class RouteTimeouts(BaseModel):
    """Overrides of the LLM timeouts for one route; unset fields keep the llm-wide values."""

    connect: float | None = Field(None, gt=0, description="seconds to connect; None = llm.connect_timeout")
    read: float | None = Field(None, gt=0, description="seconds between bytes; None = llm.read_timeout")
    total: float | None = Field(None, gt=0, description="deadline in seconds of one call; None = llm.total_timeout")


class LLMSettings(BaseModel):
    base_url: str | None = Field(
        None,
        description="OpenAI-compatible base URL ending in /v1 (vLLM: http://host:8000/v1); None = no LLM: "
        "extractive answers",
    )
    api_key: SecretStr | None = Field(None, description="bearer token for the LLM server (vLLM --api-key)")
    base_model: str = Field(
        "", description="model name for the rag route (vLLM --model / served name); required when base_url is set"
    )
    ft_model: str = Field(
        "",
        description="fine-tuned model name for ft and both (a LoRA adapter name in vLLM); required when base_url "
        "is set",
    )
    connect_timeout: float = Field(2.0, gt=0, description="seconds to connect to the LLM server")
    read_timeout: float = Field(
        60.0, gt=0, description="longest wait in seconds between bytes of an answer (streams included)"
    )
    total_timeout: float = Field(120.0, gt=0, description="deadline in seconds for one call, retries included")
    retry_attempts: int = Field(
        3,
        ge=1,
        description="tries per call; only connection errors, timeouts, 408, 429 and 5xx are retried, with "
        "full-jitter exponential backoff (0.25 s doubling, at most 4 s) or the server's Retry-After (at most 10 s)",
    )
    max_connections: int = Field(64, ge=1, description="connection pool size to the LLM server")
    max_tokens: int = Field(512, ge=1, description="max_tokens sent with each chat completion")
    temperature: float = Field(0.0, ge=0, le=2, description="sampling temperature sent with each chat completion")
    route_timeouts: dict[Route, RouteTimeouts] = Field(
        default_factory=dict,
        description='per-route overrides of the timeouts (JSON), e.g. {"ft": {"total": 10}, "both": {"read": 30}}',
    )
    max_concurrency: int = Field(32, ge=1, description="concurrent calls per model; more wait up to queue_timeout")
    queue_timeout: float = Field(
        0.5, ge=0, description="seconds a call waits for a slot before failing over (reason saturated)"
    )
    fallbacks: dict[Route, list[Step]] = Field(
        default_factory=lambda: {route: list(steps) for route, steps in DEFAULT_FALLBACKS.items()},
        description='per decided route, the steps tried in order when it fails (JSON), e.g. {"ft": ["rag", '
        '"extractive"], "rag": []}',
    )

    @model_validator(mode="after")
    def _models_named(self) -> LLMSettings:
        if self.base_url and not (self.base_model and self.ft_model):
            raise ValueError("llm.base_url is set: also set llm.base_model and llm.ft_model")
        for route, steps in self.fallbacks.items():
            if route in steps or len(set(steps)) != len(steps):
                raise ValueError(f"llm.fallbacks[{route!r}] = {steps}: list each other step at most once")
        return self


class BreakerSettings(BaseModel):
    """One circuit breaker per backend (each LLM model, the document store)."""

    failure_ratio: float = Field(
        0.5, gt=0, le=1, description="share of failed calls in the window that opens a backend's circuit"
    )
    window_seconds: float = Field(30.0, gt=0, description="seconds over which calls are counted")
    min_calls: int = Field(10, ge=1, description="calls in the window before the ratio is judged")
    cooldown_seconds: float = Field(
        15.0, gt=0, description="seconds an open circuit refuses calls before one probe call is let through"
    )


class ThresholdsSettings(BaseModel):
    uri: str = Field(
        "var/thresholds",
        description="versioned thresholds store shared by replicas: a local directory or s3://bucket/prefix "
        "(also gs://, az://); seeded from the bundle's thresholds",
    )
    storage_options: dict[str, str] = Field(
        default_factory=dict,
        description="object-store options for uri (JSON), as retrieval.storage_options: aws_endpoint, aws_region, "
        "aws_access_key_id, allow_http, ... (the AWS_* environment variables work too)",
    )
    poll_seconds: float = Field(
        2.0, gt=0, description="seconds between checks of the store for a version written by another replica"
    )
    protect_reads: bool = Field(
        False, description="the thresholds reads (GET), evaluate and calibrate need the admin key too"
    )
    outcomes_file: Path | None = Field(
        None,
        description="labelled outcomes (outcomes.jsonl schema, as `router label` writes) for calibrate/evaluate "
        'with "source": "outcomes"; None = that source is refused',
    )
    outcomes_split: str | None = Field(
        None, description="use only rows of this split (a request's split overrides it); None = all rows"
    )
    request_knob_range: tuple[float, float] | None = Field(
        (0.0, MAX_COST_WEIGHT),
        description="bounds of a request's own cost_weight (JSON [low, high]), outside which it is a 400; "
        "None (null) refuses per-request knobs",
    )

    @model_validator(mode="after")
    def _range_ordered(self) -> ThresholdsSettings:
        if self.request_knob_range is not None:
            low, high = self.request_knob_range
            if not 0.0 <= low <= high <= MAX_COST_WEIGHT:
                raise ValueError(f"thresholds.request_knob_range must satisfy 0 <= low <= high <= {MAX_COST_WEIGHT:g}")
        return self


class RoutingLogSettings(BaseModel):
    """The durable routing log: one row per decision, in a LanceDB table."""

    enabled: bool = Field(
        True, description="store every routing record durably; false = log lines only, and the log API answers 503"
    )
    uri: str | None = Field(
        None, description="LanceDB URI of the routing log (local directory or s3://...); None = retrieval.uri"
    )
    table: str = Field("routing_log", description="table name of the routing log")
    storage_options: dict[str, str] | None = Field(
        None, description="object-store options (JSON); None = retrieval.storage_options"
    )
    query_text: Literal["full", "hash"] = Field(
        "full", description="full: store the query text; hash: store only its SHA-256"
    )
    flush_seconds: float = Field(
        1.0, gt=0, description="seconds between writes of the buffered records: the most a crash can lose"
    )
    max_batch: int = Field(1000, ge=1, description="buffered records that trigger a write before flush_seconds")
    max_buffer: int = Field(
        100_000,
        ge=1,
        description="records held while storage fails; beyond it the oldest are dropped, each logged as "
        "routing_log_dropped",
    )
    retention_days: float | None = Field(
        30.0, gt=0, description="delete records older than this many days; None = keep them"
    )
    max_records: int | None = Field(
        1_000_000, ge=1, description="keep at most this many records, deleting the oldest; None = no cap"
    )
    prune_seconds: float = Field(3600.0, gt=0, description="seconds between retention runs")
    protect_reads: bool = Field(False, description="/v1/routing-logs and /v1/stats need the admin key")


class ClientSettings(BaseModel):
    """Where the CLI's ``router thresholds`` finds a running service."""

    url: str | None = Field(
        None, description="where `router thresholds` finds the service; None = http://<server.host>:<server.port>"
    )
    api_key: SecretStr | None = Field(
        None, description="admin key `router thresholds` sends; None = server.admin_api_key"
    )
    timeout: float = Field(120.0, gt=0, description="seconds `router thresholds` waits for an answer")


class LogSettings(BaseModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="the lowest level logged")
    format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto = console lines on a terminal, else JSON lines; json or console force either"
    )
    query_text: Literal["full", "hash"] = Field(
        "hash",
        description="log lines carry the query text (full), or only its SHA-256 and length (hash); the durable "
        "routing log has its own routing_log.query_text",
    )


class RateLimitRule(BaseModel):
    requests_per_second: float = Field(gt=0, description="tokens added per second to this client's bucket")
    burst: int = Field(ge=1, description="bucket size of this client: requests it may send at once")


class RateLimitSettings(BaseModel):
    """A token bucket per caller (client key name, else client IP) on the /v1/ endpoints, per replica."""

    requests_per_second: float | None = Field(
        None,
        gt=0,
        description="tokens added per second to each caller's bucket on the /v1/ endpoints (per replica); None = "
        "no limit",
    )
    burst: int = Field(20, ge=1, description="bucket size: requests a caller may send at once after a pause")
    clients: dict[str, RateLimitRule] = Field(
        default_factory=dict,
        description='per client key name, its own rule {"requests_per_second", "burst"} (JSON), e.g. {"batch": {...}}',
    )
    max_callers: int = Field(
        100_000,
        ge=1,
        description="buckets kept in memory; the least recently used one is dropped (it starts full again)",
    )


class CorsSettings(BaseModel):
    allow_origins: list[str] = Field(
        default_factory=list,
        description="origins browser pages may call from, each scheme://host[:port] (JSON list, e.g. "
        '["https://app.example.com"]); empty = no CORS headers for any origin',
    )
    max_age: int = Field(600, ge=0, description="seconds a browser may cache a preflight answer")

    @model_validator(mode="after")
    def _origins_exact(self) -> CorsSettings:
        for origin in self.allow_origins:
            if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(f"cors.allow_origins: {origin!r} is not scheme://host[:port] (no path) or '*'")
        return self


class Settings(BaseSettings):
    # hide_input_in_errors: a rejected value may be a secret (an API key, object-store credentials)
    model_config = SettingsConfigDict(
        env_prefix="ROUTER_",
        env_nested_delimiter="__",
        env_parse_none_str="null",
        extra="forbid",
        hide_input_in_errors=True,
    )

    server: ServerSettings = Field(default_factory=ServerSettings)
    embedder: EmbedderSettings = Field(default_factory=EmbedderSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    thresholds: ThresholdsSettings = Field(default_factory=ThresholdsSettings)
    routing_log: RoutingLogSettings = Field(default_factory=RoutingLogSettings)
    client: ClientSettings = Field(default_factory=ClientSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    cors: CorsSettings = Field(default_factory=CorsSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],  # noqa: ARG003 (the signature pydantic-settings calls)
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment variables first, then secret files (``Settings(_secrets_dir=...)``, else
        ``ROUTER_SECRETS_DIR``, else :data:`SECRETS_DIR`), named like the variables."""
        directory = getattr(file_secret_settings, "secrets_dir", None) or os.environ.get(
            "ROUTER_SECRETS_DIR", str(SECRETS_DIR)
        )
        secrets = NestedSecretsSettingsSource(
            file_secret_settings, secrets_dir=directory, secrets_dir_missing="ok", secrets_nested_delimiter="__"
        )
        return init_settings, env_settings, dotenv_settings, secrets

    @property
    def client_url(self) -> str:
        if self.client.url:
            return self.client.url
        wildcard = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}  # noqa: S104 (a listen address mapped to a dial one)
        host = wildcard.get(self.server.host, self.server.host)
        return f"http://{host}:{self.server.port}"

    @property
    def thresholds_path(self) -> Path:
        return self.model.thresholds_file or self.model.bundle_dir / "thresholds.json"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment, read once per process. Tests build ``Settings(...)`` directly instead."""
    return Settings()
