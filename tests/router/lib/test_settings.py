from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from models.bundle import default_bundle_dir
from router.lib.settings import Settings


def test_defaults_need_no_configuration() -> None:
    settings = Settings()
    assert settings.model.bundle_dir == default_bundle_dir()
    assert settings.thresholds_path == default_bundle_dir() / "thresholds.json"
    assert settings.llm.base_url is None and settings.retrieval.uri == "var/lancedb"


def test_environment_is_nested_with_double_underscores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTER_RETRIEVAL__TOP_K", "7")
    monkeypatch.setenv("ROUTER_LLM__BASE_URL", "http://vllm:8000/v1")
    monkeypatch.setenv("ROUTER_LLM__BASE_MODEL", "meta-llama/Llama-3.1-8B-Instruct")
    monkeypatch.setenv("ROUTER_LLM__FT_MODEL", "support-ft")
    monkeypatch.setenv("ROUTER_LLM__API_KEY", "s3cret")
    monkeypatch.setenv("ROUTER_MODEL__THRESHOLDS_FILE", "/etc/router/thresholds.json")
    monkeypatch.setenv("ROUTER_RETRIEVAL__STORAGE_OPTIONS", '{"endpoint": "http://127.0.0.1:9000"}')
    settings = Settings()
    assert settings.retrieval.top_k == 7
    assert settings.llm.ft_model == "support-ft"
    assert settings.thresholds_path == Path("/etc/router/thresholds.json")
    assert settings.retrieval.storage_options == {"endpoint": "http://127.0.0.1:9000"}
    assert "s3cret" not in repr(settings)


def test_llm_url_without_model_names_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTER_LLM__BASE_URL", "http://vllm:8000/v1")
    with pytest.raises(ValidationError, match="base_model"):
        Settings()


def test_out_of_range_and_unknown_settings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTER_RETRIEVAL__TOP_K", "0")
    with pytest.raises(ValidationError, match="top_k"):
        Settings()
    with pytest.raises(ValidationError, match="nonsense"):
        Settings(nonsense=1)


def test_admin_key_is_a_secret_and_a_short_one_is_refused_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().server.admin_api_key is None
    monkeypatch.setenv("ROUTER_SERVER__ADMIN_API_KEY", "k" * 16)
    settings = Settings()
    assert settings.server.admin_api_key is not None
    assert settings.server.admin_api_key.get_secret_value() == "k" * 16 and "k" * 16 not in repr(settings)
    monkeypatch.setenv("ROUTER_SERVER__ADMIN_API_KEY", "short-secret")
    with pytest.raises(ValidationError, match="admin_api_key") as refused:
        Settings()
    assert "short-secret" not in str(refused.value)


def test_null_in_the_environment_turns_a_limit_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().routing_log.max_records is not None and Settings().routing_log.retention_days is not None
    monkeypatch.setenv("ROUTER_ROUTING_LOG__MAX_RECORDS", "null")
    monkeypatch.setenv("ROUTER_ROUTING_LOG__RETENTION_DAYS", "null")
    settings = Settings()
    assert settings.routing_log.max_records is None and settings.routing_log.retention_days is None
