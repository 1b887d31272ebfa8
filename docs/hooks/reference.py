"""MkDocs hook: the settings and command-line reference pages, generated from the code at every build.

``reference/settings.md`` comes from :class:`router.lib.settings.Settings` (one table per section, each field's
``description``), ``reference/cli.md`` from :func:`router.cli.build_parser` (every sub-command, its usage and the
help of its arguments). Neither page exists in ``docs/``: they cannot drift from the code. ``settings_markdown()``
and ``cli_markdown()`` are plain functions, so ``tests/docs/test_docs.py`` checks them without running MkDocs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mkdocs.config.defaults import MkDocsConfig
    from mkdocs.structure.files import Files
    from pydantic import BaseModel
    from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # a checkout without `pip install -e .` still builds
    sys.path.insert(0, str(ROOT))

SETTINGS_PAGE = "reference/settings.md"
CLI_PAGE = "reference/cli.md"
USAGE_WIDTH = 100

SEE_ALSO: dict[str, list[tuple[str, str]]] = {
    "server": [("Input limits", "../http-api.md#input-limits"), ("Security", "../security.md")],
    "embedder": [("Performance", "../performance.md"), ("How a request is decided", "../bundle.md")],
    "model": [("The default bundle", "../bundle.md#the-default-bundle-measured")],
    "retrieval": [("Documents API", "../documents.md"), ("Several replicas", "../deployment.md")],
    "llm": [("Fallbacks and backend protection", "../http-api.md#fallbacks-and-backend-protection")],
    "breaker": [("Fallbacks and backend protection", "../http-api.md#fallbacks-and-backend-protection")],
    "thresholds": [("Live thresholds", "../thresholds.md")],
    "routing_log": [("The durable routing log", "../routing-log.md#the-durable-routing-log")],
    "client": [("router thresholds", "cli.md#router-thresholds")],
    "log": [("Routing records and logs", "../routing-log.md")],
    "rate_limit": [("Security", "../security.md#rate-limits")],
    "cors": [("Security", "../security.md#cors")],
}
"""Pages that explain a section, linked under its table (relative to ``reference/settings.md``)."""


# --- settings ---------------------------------------------------------------------------------------------------


def settings_markdown() -> str:
    """The settings reference: the naming rules, then one table per section of ``Settings``."""
    from router.lib import settings as module

    config = module.Settings.model_config
    prefix = str(config.get("env_prefix", ""))
    delimiter = str(config.get("env_nested_delimiter", "__"))
    sections = list(_sections(module.Settings))
    section, model = sections[0]
    field = next(iter(model.model_fields))
    example = f"{prefix}{section}{delimiter}{field}".upper()
    lines = [
        "# Settings",
        "",
        "<!-- Generated from router/lib/settings.py by docs/hooks/reference.py at build time: edit the code. -->",
        "",
        "Settings are one typed object, `router.lib.settings.Settings`, read once per process from environment "
        f"variables with the prefix `{prefix}`. `{delimiter}` separates a section from its field, so "
        f"`{example}` sets `settings.{section}.{field}`. Names are "
        "case-insensitive. Fields of a dict, list or tuple type take JSON. The `router` command reads the same "
        "settings.",
        "",
        "Each setting can also come from a file named like its variable, holding the value, in "
        f"`{module.SECRETS_DIR}/` (the Kubernetes layout of a mounted Secret) or in the directory that "
        "`ROUTER_SECRETS_DIR` names instead: "
        f"for example `{module.SECRETS_DIR}/{prefix}SERVER{delimiter}ADMIN_API_KEY`. A missing directory is no "
        "error, and an environment variable wins over a file. See [secret files](../security.md#secret-files).",
        "",
        "A default of `None` means unset; the description says what unset does.",
        "",
        "| section | variables |",
        "|---|---|",
    ]
    for name, model in sections:
        lines.append(f"| [`{name}`](#{name}) | {len(model.model_fields)} |")
    for name, model in sections:
        lines += ["", f"## `{name}` {{ #{name} }}", ""]
        if model.__doc__:
            lines += [_inline(_dedent(model.__doc__)), ""]
        variables = {f"{prefix}{name}{delimiter}{field}".upper(): info for field, info in model.model_fields.items()}
        lines += _field_table("variable", variables)
        for sub in _nested_models(model):
            lines += ["", f"Each `{sub.__name__}` value (a JSON object) takes:", ""]
            lines += _field_table("field", sub.model_fields)
        if name in SEE_ALSO:
            links = ", ".join(f"[{title}]({url})" for title, url in SEE_ALSO[name])
            lines += ["", f"See also: {links}."]
    return "\n".join(lines) + "\n"


def _sections(settings: type[BaseModel]) -> Iterator[tuple[str, type[BaseModel]]]:
    from pydantic import BaseModel

    for name, info in settings.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            yield name, info.annotation


def _nested_models(model: type[BaseModel]) -> list[type[BaseModel]]:
    """Models that appear inside the types of ``model``'s fields (``dict[str, RateLimitRule]``), in field order."""
    from pydantic import BaseModel

    found: list[type[BaseModel]] = []

    def visit(tp: Any) -> None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp not in found:
                found.append(tp)
            return
        for arg in typing.get_args(tp):
            visit(arg)

    for info in model.model_fields.values():
        visit(info.annotation)
    return found


def _field_table(head: str, fields: dict[str, FieldInfo]) -> list[str]:
    """One row per field; a variable's row carries an anchor (``#router_server__port``) that other pages link to."""
    rows = [f"| {head} | type | default | description |", "|---|---|---|---|"]
    for name, info in fields.items():
        anchor = f'<a id="{name.lower()}"></a>' if head == "variable" else ""
        rows.append(f"| {anchor}`{name}` | {_type(info)} | {_default(info)} | {_inline(info.description or '')} |")
    return rows


def _type(info: FieldInfo) -> str:
    text = f"`{_type_name(info.annotation)}`"  # a pipe inside a code span does not split a table cell
    bounds = _bounds(info)
    return f"{text} {bounds}" if bounds else text


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "None"
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        return " | ".join(json.dumps(arg) for arg in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(_type_name(arg) for arg in args)}]" if args else name
    return getattr(tp, "__name__", str(tp))


def _bounds(info: FieldInfo) -> str:
    marks = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<", "min_length": "length ≥", "max_length": "length ≤"}
    found = []
    for item in info.metadata:
        for attribute, mark in marks.items():
            value = getattr(item, attribute, None)
            if value is not None:
                found.append(f"{mark} {value:g}" if isinstance(value, float) else f"{mark} {value}")
    return ", ".join(found)


def _default(info: FieldInfo) -> str:
    from pydantic import BaseModel
    from pydantic_core import PydanticUndefined

    value = info.get_default(call_default_factory=True)
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, Path):
        if value.is_absolute() and value.is_relative_to(ROOT):  # a default inside the package, shown from the repo
            value = value.relative_to(ROOT)
        return f"`{value.as_posix()}`"
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if value is None:
        return "`None`"
    text = value if isinstance(value, str) else json.dumps(value, separators=(", ", ": "))
    return f"`{text}`" if text != "" else '`""`'


# --- command line -----------------------------------------------------------------------------------------------


def cli_markdown() -> str:
    """The command-line reference: every (sub-)command of ``router``, its usage and its arguments."""
    from router.cli import build_parser

    parser = build_parser()
    commands = list(_commands(parser, []))
    lines = [
        "# Command line",
        "",
        "<!-- Generated from router.cli.build_parser() by docs/hooks/reference.py at build time: edit the code. -->",
        "",
    ]
    if parser.description:
        lines += [_rst(_dedent(parser.description)), ""]
    lines += ["Every command reads the same `ROUTER_*` [settings](settings.md) as the service.", ""]
    lines += ["| command | what it does |", "|---|---|"]
    for path, _, help_text in commands[1:]:
        lines.append(f"| [`{' '.join(path)}`](#{_slug(path)}) | {_inline(help_text, 'settings.md')} |")
    lines += ["", "## Usage", "", *_usage(parser), *_arguments(parser)]
    for path, sub, help_text in commands[1:]:
        lines += ["", f"{'#' * min(len(path), 4)} `{' '.join(path)}` {{ #{_slug(path)} }}", ""]
        if help_text:
            sentence = help_text[:1].upper() + help_text[1:]
            lines += [_inline(sentence if sentence.endswith(".") else f"{sentence}.", "settings.md"), ""]
        if sub.description:
            lines += [_rst(_dedent(sub.description)), ""]
        lines += _usage(sub) + _arguments(sub)
    return "\n".join(lines) + "\n"


def _commands(
    parser: argparse.ArgumentParser, path: list[str], help_text: str = ""
) -> Iterator[tuple[list[str], argparse.ArgumentParser, str]]:
    """Depth first: ``(["router", "thresholds", "set"], parser, help)`` for the root and every sub-command."""
    path = path or [parser.prog]
    yield path, parser, help_text
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield from _commands(sub, [*path, name], helps.get(name, ""))


def _usage(parser: argparse.ArgumentParser) -> list[str]:
    parser.formatter_class = _Formatter  # a fixed width, whatever the terminal building the docs
    if hasattr(parser, "color"):  # Python 3.14: never colour the usage
        parser.color = False
    return ["```text", parser.format_usage().strip(), "```"]


class _Formatter(argparse.HelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=USAGE_WIDTH)


def _arguments(parser: argparse.ArgumentParser) -> list[str]:
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        names = ", ".join(f"`{name}`" for name in action.option_strings) or f"`{action.metavar or action.dest}`"
        rows.append(f"| {names} | {_value(action)} | {_default_of(action)} | {_inline(_help(action), 'settings.md')} |")
    if not rows:
        return []
    return ["", "| argument | value | default | description |", "|---|---|---|---|", *rows]


def _value(action: argparse.Action) -> str:
    """What the argument takes: nothing (a flag), a type, or one of its choices; and whether it must be given."""
    if action.nargs == 0:
        value = "flag"
    elif action.choices is not None:
        value = " \\| ".join(f"`{choice}`" for choice in action.choices)
    else:
        value = getattr(action.type, "__name__", "str") if action.type else "str"
    if action.nargs in ("+", "*"):
        value += ", one or more" if action.nargs == "+" else ", any number"
    if action.required and action.option_strings:
        value += ", required"
    return value


def _default_of(action: argparse.Action) -> str:
    if action.default is True:
        return "on"
    unset = action.default is None or action.default is False or action.default in ("", argparse.SUPPRESS)
    if unset or isinstance(action.default, list):
        return ""
    return f"`{action.default}`"


def _help(action: argparse.Action) -> str:
    """The help text as ``--help`` prints it (``%(default)s`` and the like filled in)."""
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    return action.help % {**vars(action), "prog": ""} if "%(" in action.help else action.help


def _slug(path: list[str]) -> str:
    return "-".join(path)


# --- text -------------------------------------------------------------------------------------------------------


def _dedent(text: str) -> str:
    import inspect

    return inspect.cleandoc(text)


def _rst(text: str) -> str:
    """A docstring's reStructuredText literals (``x``) as Markdown code, its paragraphs kept."""
    return re.sub(r"``(.+?)``", r"`\1`", text)


SETTING = re.compile(r"(?<![\w./;])([a-z_]+)\.([a-z_]+)\b(?![(/])")


def _inline(text: str, settings_url: str = "") -> str:
    """One table cell: Markdown-safe outside code spans (no HTML tags from ``<key>``, no column breaks; a pipe inside
    a code span splits no cell), and each setting it names (``retrieval.top_k``) a link to its row of the settings
    page at ``settings_url``."""
    names = _setting_names()
    parts = re.split(r"(`[^`]*`)", _rst(text).replace("\n", " "))
    for i, part in enumerate(parts):
        if not part.startswith("`"):
            part = part.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("*", "\\*")
            part = SETTING.sub(lambda m: _setting_link(m, names, settings_url), part).replace("|", "\\|")
        parts[i] = part
    return "".join(parts)


def _setting_link(match: re.Match[str], names: set[tuple[str, str]], settings_url: str) -> str:
    section, field = match.groups()
    if (section, field) not in names:
        return match.group(0)
    return f"[{section}.{field}]({settings_url}#router_{section}__{field})"


def _setting_names() -> set[tuple[str, str]]:
    from router.lib.settings import Settings

    return {(name, field) for name, model in _sections(Settings) for field in model.model_fields}


# --- the hook ---------------------------------------------------------------------------------------------------


def on_files(files: Files, config: MkDocsConfig) -> Files:
    from mkdocs.structure.files import File

    files.append(File.generated(config, SETTINGS_PAGE, content=settings_markdown()))
    files.append(File.generated(config, CLI_PAGE, content=cli_markdown()))
    return files
