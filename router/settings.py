"""All settings, in one typed object read from ``ROUTER_*`` environment variables (``__`` separates sections).

Example: ``ROUTER_LLM__BASE_URL=http://vllm:8000/v1`` sets ``settings.llm.base_url``. The README's settings table
is the reference; keep it in step with this file.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.bundle import default_bundle_dir


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_query_chars: int = Field(2000, ge=1, description="longer queries are rejected with 400")


class EmbedderSettings(BaseModel):
    path: Path | None = Field(None, description="local sentence-transformers model directory; None = bundled MiniLM")
    device: str = "cpu"
    batch_size: int = Field(64, ge=1)
    threads: int = Field(2, ge=1, description="concurrent embedding calls allowed off the event loop")


class ModelSettings(BaseModel):
    bundle_dir: Path = Field(default_factory=default_bundle_dir)
    thresholds_file: Path | None = Field(None, description="None = thresholds.json inside the bundle")


class RetrievalSettings(BaseModel):
    uri: str = Field("var/lancedb", description="LanceDB URI: a local directory or s3://bucket/prefix")
    table: str = "chunks"
    top_k: int = Field(4, ge=1, le=50)
    chunk_max_chars: int = Field(1000, ge=200)
    chunk_overlap_chars: int = Field(150, ge=0)
    read_consistency_seconds: float = Field(5.0, ge=0, description="how stale a replica's view of the table may be")
    storage_options: dict[str, str] = Field(default_factory=dict, description="object-store options (JSON)")


class LLMSettings(BaseModel):
    base_url: str | None = Field(None, description="OpenAI-compatible base URL ending in /v1; None = extractive")
    api_key: SecretStr | None = None
    base_model: str = Field("", description="model name for the rag route (vLLM --model / served name)")
    ft_model: str = Field("", description="fine-tuned model name for ft and both (a LoRA adapter name in vLLM)")
    connect_timeout: float = Field(2.0, gt=0)
    read_timeout: float = Field(60.0, gt=0, description="longest wait between bytes of an answer")
    total_timeout: float = Field(120.0, gt=0, description="deadline for one call, retries included")
    retry_attempts: int = Field(3, ge=1, description="tries per call for connection errors, 408, 429 and 5xx")
    max_connections: int = Field(64, ge=1)
    max_tokens: int = Field(512, ge=1)
    temperature: float = Field(0.0, ge=0, le=2)

    @model_validator(mode="after")
    def _models_named(self) -> LLMSettings:
        if self.base_url and not (self.base_model and self.ft_model):
            raise ValueError("llm.base_url is set: also set llm.base_model and llm.ft_model")
        return self


class LogSettings(BaseModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "console"] = Field("auto", description="auto = console on a terminal, else JSON")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ROUTER_", env_nested_delimiter="__", extra="forbid")

    server: ServerSettings = Field(default_factory=ServerSettings)
    embedder: EmbedderSettings = Field(default_factory=EmbedderSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    @property
    def thresholds_path(self) -> Path:
        return self.model.thresholds_file or self.model.bundle_dir / "thresholds.json"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment, read once per process. Tests build ``Settings(...)`` directly instead."""
    return Settings()
