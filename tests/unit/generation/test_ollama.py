"""The Ollama adapter's context window: sized to prompt and reply, capped by the model's context length,
checked against the loopback fake, which cuts the start of a prompt that overflows its window as Ollama does."""

from __future__ import annotations

import json
import logging

import ollama
import pytest

from core.settings import OllamaSettings
from core.types import Chunk, Section, SourceDocument
from generation.extraction import LlmIncidentExtractor
from generation.ollama import OllamaChatModel, context_window, model_context_length
from generation.ports import Message
from tests.fakes.ollama import DEFAULT_NUM_CTX, fake_ollama

RULES = "RULES: answer only from the runbooks."


def first_words(body: dict) -> str:
    """A model that repeats how its input begins: the first message's role and first word."""
    first = body["messages"][0]
    return f"{first['role']} {first['content'].split()[0]}"


def long_prompt(words: int) -> list[Message]:
    return [{"role": "system", "content": RULES}, {"role": "user", "content": "pod restarting " * (words // 2)}]


async def test_a_prompt_past_ollamas_default_window_keeps_its_system_prompt() -> None:
    messages = long_prompt(3000)
    async with fake_ollama(first_words, context_length=32768) as server:
        model = OllamaChatModel(OllamaSettings(host=server.url, model="llama3.1:8b", timeout_s=5))
        reply = await model.complete(messages, max_tokens=256)
        await model.aclose()
    assert reply == "system RULES:" and server.truncated == []
    assert 3000 + 256 <= server.requests[-1][1]["options"]["num_ctx"] <= 32768


async def test_the_window_is_capped_by_the_models_context_length_read_once() -> None:
    async with fake_ollama(first_words, context_length=4096) as server:
        model = OllamaChatModel(OllamaSettings(host=server.url, model="llama3.1:8b", timeout_s=5))
        for _ in range(2):
            assert await model.complete(long_prompt(1500), max_tokens=1024) == "system RULES:"
        await model.aclose()
    assert [body["options"]["num_ctx"] for _, body in server.requests] == [4096, 4096]
    assert server.shown == ["llama3.1:8b"]


async def test_the_fake_cuts_the_start_of_a_prompt_sent_without_num_ctx(caplog: pytest.LogCaptureFixture) -> None:
    # What the adapter guards against, shown on the fake itself: the system prompt is lost, with only a log line.
    async with fake_ollama(first_words) as server:
        client = ollama.AsyncClient(host=server.url)
        with caplog.at_level(logging.WARNING):
            response = await client.chat(model="llama3.1:8b", messages=long_prompt(3000))
        await client.close()
    assert response.message.content == "user pod"
    assert server.truncated == [(3000 + len(RULES.split()), DEFAULT_NUM_CTX)]
    assert "truncating input prompt" in caplog.text


def test_windows_are_powers_of_two_from_2048_up_to_the_context_length() -> None:
    assert context_window(100, 512, None) == 2048
    assert context_window(2500, 1024, None) == 4096
    assert context_window(2500, 1024, 3000) == 3000
    assert context_window(4096, 1, 131072) == 8192


def test_the_context_length_is_read_under_the_models_architecture() -> None:
    assert model_context_length({"general.architecture": "gemma3", "gemma3.context_length": 32768}) == 32768
    assert model_context_length({"general.architecture": "gemma3", "llama.context_length": 8192}) is None
    assert model_context_length(None) is None


async def test_the_llm_extractor_keeps_its_instructions_on_a_long_chunk() -> None:
    # The extractor (like the Scorer) goes through the same adapter: a long runbook section must not
    # push its system prompt out of the window.
    text = "Check the replica lag and the WAL sender state. " * 400  # 3,600 words
    doc = SourceDocument(
        doc_id="db/PgLag.md", source="/runbooks", title="PgLag", kind="markdown", content_hash="h",
        sections=(Section(heading_path=("Diagnosis",), text=text),),
    )  # fmt: skip
    chunk = Chunk(chunk_id="db/PgLag.md#0", doc_id=doc.doc_id, ordinal=0, title="PgLag", heading_path=(), text=text)

    def instructed(body: dict) -> str:
        seen = body["messages"][0]["role"] == "system"
        return json.dumps({"incidents": [{"name": "PostgresReplicationLagHigh"}] if seen else []})

    async with fake_ollama(instructed, context_length=32768) as server:
        model = OllamaChatModel(OllamaSettings(host=server.url, model="llama3.1:8b", timeout_s=5))
        nodes = await LlmIncidentExtractor(model).extract(doc, chunk)
        await model.aclose()
    assert [n.name for n in nodes] == ["PostgresReplicationLagHigh"] and server.truncated == []
