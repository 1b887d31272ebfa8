from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from backends.documents import DocumentError, chunk_text, read_documents

MARKDOWN = """# Guide

Intro paragraph about the guide.

## Install

Run the installer. It takes a minute. Then restart.

## Configure

""" + " ".join(f"Sentence number {i} explains one setting in detail." for i in range(40))


def test_headings_start_chunks_and_travel_with_them() -> None:
    chunks = chunk_text(MARKDOWN, max_chars=300, overlap_chars=80)
    assert (chunks[0].section, chunks[0].body) == ("Guide", "Intro paragraph about the guide.")
    assert chunks[0].text == "Guide\n\nIntro paragraph about the guide."  # what is embedded
    assert chunks[1].section == "Guide > Install" and chunks[1].body.startswith("Run the installer.")
    configure = [c.text for c in chunks if c.section == "Guide > Configure"]
    assert len(configure) > 3  # the long section is split ...
    assert all(len(c.text) <= 300 for c in chunks)  # ... within the limit
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_consecutive_chunks_of_a_section_overlap_by_whole_sentences() -> None:
    configure = [c.body for c in chunk_text(MARKDOWN, max_chars=300, overlap_chars=80) if "Configure" in c.section]
    for previous, current in itertools.pairwise(configure):
        first_sentence = current.split(". ")[0]
        assert first_sentence in previous


def test_no_text_is_lost() -> None:
    chunks = chunk_text(MARKDOWN, max_chars=300, overlap_chars=0)
    joined = " ".join(c.body for c in chunks)
    for i in range(40):
        assert f"Sentence number {i} explains" in joined


def test_overlap_must_be_smaller_than_chunk() -> None:
    with pytest.raises(ValueError, match="overlap"):
        chunk_text("text", max_chars=100, overlap_chars=100)


def test_reads_markdown_text_and_jsonl(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Alpha\n\nbody")
    (tmp_path / "notes.txt").write_text("plain notes")
    (tmp_path / "ignored.bin").write_bytes(b"\x00")
    (tmp_path / "faq.jsonl").write_text(json.dumps({"id": "q1", "text": "answer", "title": "Q one"}) + "\n\n")
    documents = {d.id: d for d in read_documents([tmp_path])}
    assert documents["q1"].title == "Q one"
    alpha = documents[str((tmp_path / "a.md").resolve())]
    assert alpha.title == "Alpha" and alpha.uri.startswith("file://")
    assert len(documents) == 3


@pytest.mark.parametrize("line", ['{"text": "no id"}', "not json", '{"id": "x", "text": "  "}'])
def test_bad_jsonl_line_is_reported_with_its_line_number(tmp_path: Path, line: str) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text(json.dumps({"id": "ok", "text": "fine"}) + "\n" + line + "\n")
    with pytest.raises(DocumentError, match=r"docs.jsonl:2"):
        list(read_documents([path]))


def test_missing_and_unsupported_paths_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match="no such file"):
        list(read_documents([tmp_path / "absent.md"]))
    (tmp_path / "x.pdf").write_bytes(b"%PDF")
    with pytest.raises(DocumentError, match="unsupported"):
        list(read_documents([tmp_path / "x.pdf"]))
