from __future__ import annotations

import httpx

from backends.generators import ChatGenerator, ExtractiveGenerator, build_messages
from backends.types import Passage
from backends.vllm import ChatClient
from tests.fakes.vllm import FakeVLLM

PASSAGES = [
    Passage(
        chunk_id="lora#2",
        doc_id="lora",
        section="LoRA > Alpha",
        text="The alpha parameter scales the adapter update. Divide alpha by the rank to get the effective scale. "
        "Many recipes set alpha to twice the rank.",
        title="LoRA",
        uri="file:///lora.md",
        score=0.62,
    ),
    Passage(
        chunk_id="vllm#0",
        doc_id="vllm",
        section="",
        text="vLLM serves models with paged attention.\n\nIt batches requests continuously.",
        title="vLLM",
        uri="file:///vllm.md",
        score=0.31,
    ),
]


async def test_extractive_answer_quotes_matching_sentences_with_citations() -> None:
    generation = await ExtractiveGenerator().generate("What does the alpha parameter control?", "rag", PASSAGES)
    assert generation.generator == "extractive" and generation.model is None
    assert "The alpha parameter scales the adapter update. [1]" in generation.text
    assert "paged attention" not in generation.text
    assert "LoRA > Alpha" not in generation.text  # the heading trail is not quoted as an answer


async def test_extractive_answer_without_passages_says_so() -> None:
    generation = await ExtractiveGenerator().generate("anything", "ft", [])
    assert "No documents matched" in generation.text


def test_prompt_numbers_sources_in_order_and_fences_them() -> None:
    system, user = build_messages("What is alpha?", PASSAGES)
    assert system.role == "system" and "[n]" in system.content
    assert user.content.index("[1] LoRA > Alpha\nThe alpha") < user.content.index("[2] vLLM\nvLLM serves")
    assert user.content.startswith("<sources>\n") and "</sources>\n\nQuestion: What is alpha?" in user.content
    assert [m.role for m in build_messages("q", [])] == ["system", "user"]


async def test_each_route_uses_its_model() -> None:
    fake = FakeVLLM(base_model="base", adapters={"support-ft": "/adapters/ft"})
    async with httpx.AsyncClient(transport=fake.transport()) as http:
        generator = ChatGenerator(
            ChatClient(http, "http://vllm/v1"), base_model="base", ft_model="support-ft", max_tokens=32, temperature=0.0
        )
        for route, model in (("ft", "support-ft"), ("rag", "base"), ("both", "support-ft")):
            generation = await generator.generate("q?", route, PASSAGES if route != "ft" else [])
            assert generation.model == model and generation.text == fake.reply
    sent = [req.read() for req in fake.requests]
    assert b"<sources>" not in sent[0] and b"<sources>" in sent[1] and b"<sources>" in sent[2]
