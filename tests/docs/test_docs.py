"""The documentation site: settings described in the code, and the reference pages that docs/hooks/reference.py
generates from it. Checked without building the site (`make docs` does that)."""

from __future__ import annotations

import argparse
import importlib.util
import re
import typing
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from router.cli import build_parser
from router.lib.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
HOOK = DOCS / "hooks" / "reference.py"


@pytest.fixture(scope="module")
def reference() -> ModuleType:
    """The hook module, loaded from its file (docs/ is no package)."""
    spec = importlib.util.spec_from_file_location("docs_reference_hook", HOOK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sections() -> list[tuple[str, type[BaseModel]]]:
    sections = []
    for name, info in Settings.model_fields.items():
        model = info.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel), (
            f"settings.{name} is no section: the settings page documents sections only (docs/hooks/reference.py)"
        )
        sections.append((name, model))
    return sections


def _models_inside(tp: Any) -> Iterator[type[BaseModel]]:
    """Models in a field's type, such as RateLimitRule in ``dict[str, RateLimitRule]``."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        yield tp
    for arg in typing.get_args(tp):
        yield from _models_inside(arg)


SECTIONS = _sections()


@pytest.mark.parametrize(("section", "model"), SECTIONS, ids=[name for name, _ in SECTIONS])
def test_every_setting_has_a_description(section: str, model: type[BaseModel]) -> None:
    models = [model, *(sub for info in model.model_fields.values() for sub in _models_inside(info.annotation))]
    missing = [
        f"{section}: {sub.__name__}.{field}"
        for sub in models
        for field, info in sub.model_fields.items()
        if not (info.description or "").strip()
    ]
    assert not missing, f"give these a Field(..., description=...) in router/lib/settings.py: {missing}"


def test_settings_page_names_every_variable(reference: ModuleType) -> None:
    page = reference.settings_markdown()
    assert "`ROUTER_SERVER__PORT`" in page
    missing = [
        variable
        for section, model in SECTIONS
        for variable in (f"ROUTER_{section}__{field}".upper() for field in model.model_fields)
        if f"`{variable}`" not in page or f'id="{variable.lower()}"' not in page
    ]
    assert not missing
    assert "/run/secrets/router" in page and "ROUTER_SECRETS_DIR" in page


def _sub_commands(parser: argparse.ArgumentParser, path: list[str]) -> Iterator[tuple[list[str], Any]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield [*path, name], sub
                yield from _sub_commands(sub, [*path, name])


def test_cli_page_names_every_sub_command_and_option(reference: ModuleType) -> None:
    page = reference.cli_markdown()
    commands = list(_sub_commands(build_parser(), ["router"]))
    names = [" ".join(path) for path, _ in commands]
    assert {"router serve", "router thresholds set", "router logs tail", "router embedder export"} <= set(names)
    missing = [name for name in names if f"`{name}`" not in page]
    assert not missing
    options = {option for _, sub in commands for action in sub._actions for option in action.option_strings}
    missing = sorted(option for option in options - {"-h", "--help"} if f"`{option}`" not in page)
    assert not missing


def _nav_pages(items: list[Any]) -> Iterator[str]:
    for item in items:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        if isinstance(value, list):
            yield from _nav_pages(value)
        else:
            yield value


def test_nav_lists_every_page(reference: ModuleType) -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    written = {path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md")}
    assert not written & {reference.SETTINGS_PAGE, reference.CLI_PAGE}, "generated pages must not be files in docs/"
    assert sorted(_nav_pages(config["nav"])) == sorted(written | {reference.SETTINGS_PAGE, reference.CLI_PAGE})
    assert "docs/hooks/reference.py" in config["hooks"]


def test_readme_links_into_the_docs_exist() -> None:
    links = re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", (ROOT / "README.md").read_text())
    assert links
    assert [link for link in links if not (ROOT / link).exists()] == []
