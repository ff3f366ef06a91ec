"""The Ollama chat adapter against the shared ChatModel contract, on the loopback Ollama fake (no
Ollama server can run here; the fake truncates and cuts the way Ollama does)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from core.settings import OllamaSettings
from generation.ollama import OllamaChatModel
from tests.contract.chat_model import ChatModelContract
from tests.fakes.ollama import FakeOllama, fake_ollama, schema_following

PROSE = "Check the pod events first, then the container logs of the last restart, then the node it ran on."


class TestOllamaChatModel(ChatModelContract):
    @pytest.fixture
    async def server(self) -> AsyncIterator[FakeOllama]:
        async with fake_ollama(schema_following(PROSE), context_length=8192) as server:
            yield server

    @pytest.fixture
    async def chat(self, server: FakeOllama) -> AsyncIterator[OllamaChatModel]:
        model = OllamaChatModel(OllamaSettings(host=server.url, model="llama3.1:8b", timeout_s=5))
        yield model
        await model.aclose()

    @pytest.fixture
    async def unreachable(self) -> AsyncIterator[OllamaChatModel]:
        model = OllamaChatModel(OllamaSettings(host="http://127.0.0.1:9", model="llama3.1:8b", timeout_s=2))
        yield model
        await model.aclose()

    @pytest.fixture
    async def unlisted(self, server: FakeOllama) -> AsyncIterator[OllamaChatModel]:
        model = OllamaChatModel(OllamaSettings(host=server.url, model="qwen3:4b", timeout_s=5))
        yield model
        await model.aclose()
