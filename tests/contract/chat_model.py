"""The behaviour every ChatModel adapter must show; subclass with ``chat``, ``unreachable`` and
``unlisted`` fixtures (the served model; the adapter pointed at a closed port; a model the server lacks).

The replies are checked for shape and bounds, never for sense: the real model here is a small base model.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from core.errors import ModelUnavailable, PlanError
from generation.ports import ChatModel, Message

QUESTION: list[Message] = [
    {"role": "system", "content": "You write troubleshooting checklists as JSON."},
    {"role": "user", "content": "Question: nginx pods on prod are crash-looping. Give a title and up to 3 commands."},
]
# maxLength and maxItems keep a small base model from looping inside a string (notes/libraries.md §5).
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 40},
        "commands": {"type": "array", "items": {"type": "string", "maxLength": 30}, "maxItems": 3},
        "severity": {"type": "string", "enum": ["low", "high"]},
    },
    "required": ["title", "commands", "severity"],
    "additionalProperties": False,
}
LONG_ANSWER: list[Message] = [{"role": "user", "content": "Count from one to two hundred in words, one per line."}]


class ChatModelContract:
    @pytest.fixture
    async def chat(self) -> ChatModel:
        raise NotImplementedError

    @pytest.fixture
    async def unreachable(self) -> ChatModel:
        raise NotImplementedError

    @pytest.fixture
    async def unlisted(self) -> ChatModel:
        raise NotImplementedError

    async def test_a_schema_holds_the_reply(self, chat: ChatModel) -> None:
        raw = await chat.complete(QUESTION, schema=SCHEMA, max_tokens=120)
        jsonschema.validate(json.loads(raw), SCHEMA)

    async def test_without_a_schema_the_reply_is_text(self, chat: ChatModel) -> None:
        raw = await chat.complete(LONG_ANSWER, max_tokens=16)
        assert raw.strip() and not raw.lstrip().startswith("{")

    async def test_max_tokens_bounds_the_reply(self, chat: ChatModel) -> None:
        # A word takes at least one token, so 5 tokens make at most 5 words.
        raw = await chat.complete(LONG_ANSWER, max_tokens=5)
        assert 0 < len(raw.split()) <= 5

    async def test_a_prompt_longer_than_the_context_is_refused(self, chat: ChatModel) -> None:
        too_long: list[Message] = [{"role": "user", "content": "disk full on node " * 10_000}]
        with pytest.raises(PlanError, match="cannot take this prompt"):
            await chat.complete(too_long, max_tokens=16)

    async def test_ping_finds_the_model(self, chat: ChatModel) -> None:
        await chat.ping()

    async def test_a_model_the_server_lacks_fails_ping(self, unlisted: ChatModel) -> None:
        with pytest.raises(ModelUnavailable, match="does not"):
            await unlisted.ping()

    async def test_an_unreachable_server_is_unavailable(self, unreachable: ChatModel) -> None:
        with pytest.raises(ModelUnavailable, match=r"127\.0\.0\.1:9\b"):
            await unreachable.complete(QUESTION, max_tokens=8)
        with pytest.raises(ModelUnavailable, match=r"127\.0\.0\.1:9\b"):
            await unreachable.ping()
