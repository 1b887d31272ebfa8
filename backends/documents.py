"""Reading documents from files and cutting them into overlapping, structure-aware chunks.

Files: ``.md``/``.markdown``/``.txt`` (one document each; id = the resolved path) and ``.jsonl`` (one document per
line: ``{"id", "text", "title"?, "uri"?}``). Directories are walked recursively for those suffixes.

Chunking keeps Markdown structure: a heading always starts a new chunk, and the chunk records its heading trail
(``Title > Section``) apart from its body, so the trail is embedded with the body but never quoted as content;
paragraphs are packed whole up to ``max_chars``; a paragraph longer than that is split at
sentence ends (then at spaces); consecutive chunks of one section overlap by up to ``overlap_chars`` of whole
sentences.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TEXT_SUFFIXES = frozenset({".md", ".markdown", ".txt"})
SUFFIXES = TEXT_SUFFIXES | {".jsonl"}
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class DocumentError(ValueError):
    """A document file cannot be read; the message names the file (and line)."""


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    title: str
    uri: str


@dataclass(frozen=True)
class Chunk:
    index: int
    section: str
    body: str

    @property
    def text(self) -> str:
        """What is embedded: the heading trail, a blank line, the body."""
        return f"{self.section}\n\n{self.body}" if self.section else self.body


def title_of(text: str, fallback: str) -> str:
    """The text of the first Markdown heading, else ``fallback``."""
    for line in text.splitlines():
        match = _HEADING.match(line)
        if match:
            return match.group(2)
    return fallback


def _jsonl_documents(path: Path) -> Iterator[Document]:
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            doc_id, text = str(row["id"]).strip(), str(row["text"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DocumentError(f"{path}:{line_no}: expected a JSON object with 'id' and 'text' ({exc})") from exc
        if not doc_id or not text.strip():
            raise DocumentError(f"{path}:{line_no}: empty 'id' or 'text'")
        title = str(row.get("title") or title_of(text, doc_id))
        yield Document(id=doc_id, text=text, title=title, uri=str(row.get("uri") or f"{path.as_uri()}#{doc_id}"))


def _file_documents(path: Path) -> Iterator[Document]:
    if path.suffix.lower() == ".jsonl":
        yield from _jsonl_documents(path)
        return
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    if text.strip():
        resolved = path.resolve()
        yield Document(id=str(resolved), text=text, title=title_of(text, path.stem), uri=resolved.as_uri())


def read_documents(paths: list[Path]) -> Iterator[Document]:
    """Documents from files and directories, in a stable order. Unsupported or missing paths are errors."""
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        elif path.is_file():
            if path.suffix.lower() not in SUFFIXES:
                raise DocumentError(f"{path}: unsupported file type (use {', '.join(sorted(SUFFIXES))})")
            files = [path]
        else:
            raise DocumentError(f"{path}: no such file or directory")
        for file in files:
            yield from _file_documents(file)


def _sections(text: str) -> Iterator[tuple[str, list[str]]]:
    """(heading breadcrumb, paragraphs) per Markdown section."""
    trail: list[tuple[int, str]] = []
    paragraphs: list[str] = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        lines = block.strip().splitlines()
        while lines and (match := _HEADING.match(lines[0])):
            if paragraphs:
                yield " > ".join(t for _, t in trail), paragraphs
                paragraphs = []
            level = len(match.group(1))
            trail = [(lvl, title) for lvl, title in trail if lvl < level] + [(level, match.group(2))]
            lines = lines[1:]
        if lines:
            paragraphs.append("\n".join(lines))
    if paragraphs:
        yield " > ".join(t for _, t in trail), paragraphs


def _pieces(paragraph: str, max_chars: int) -> list[str]:
    """A paragraph as pieces of at most ``max_chars``: whole, else at sentence ends, else at spaces."""
    if len(paragraph) <= max_chars:
        return [paragraph]
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(paragraph):
        while len(sentence) > max_chars:
            cut = sentence.rfind(" ", 0, max_chars)
            cut = cut if cut > 0 else max_chars
            pieces.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        pieces.append(sentence)
    return [p for p in pieces if p]


def _overlap(text: str, overlap_chars: int) -> str:
    tail: list[str] = []
    for sentence in reversed(_SENTENCE_END.split(text)):
        if sum(len(s) + 1 for s in tail) + len(sentence) > overlap_chars:
            break
        tail.insert(0, sentence)
    return " ".join(tail)


def chunk_text(text: str, *, max_chars: int = 1000, overlap_chars: int = 150) -> list[Chunk]:
    if overlap_chars >= max_chars:
        raise ValueError("overlap_chars must be smaller than max_chars")
    chunks: list[tuple[str, str]] = []
    for heading, paragraphs in _sections(text):
        budget = max(max_chars - len(heading) - 2, max_chars // 2)
        pieces = [(n, piece) for n, paragraph in enumerate(paragraphs) for piece in _pieces(paragraph, budget)]
        body: list[tuple[int, str]] = []
        for paragraph_no, piece in pieces:
            if body and _size(heading, [*body, (paragraph_no, piece)]) > max_chars:
                chunks.append((heading, _render(body)))
                carried = _overlap(body[-1][1], overlap_chars)
                kept = [(body[-1][0], carried)] if carried else []
                body = kept if kept and _size(heading, [*kept, (paragraph_no, piece)]) <= max_chars else []
            body.append((paragraph_no, piece))
        if body:
            chunks.append((heading, _render(body)))
    return [Chunk(index=i, section=section, body=body) for i, (section, body) in enumerate(chunks)]


def _size(heading: str, body: list[tuple[int, str]]) -> int:
    return len(Chunk(0, heading, _render(body)).text)


def _render(body: list[tuple[int, str]]) -> str:
    """Paragraphs separated by blank lines; pieces of one paragraph joined by a space."""
    paragraphs: list[str] = []
    previous = None
    for paragraph_no, piece in body:
        if paragraph_no == previous:
            paragraphs[-1] += " " + piece
        else:
            paragraphs.append(piece)
        previous = paragraph_no
    return "\n\n".join(paragraphs)
