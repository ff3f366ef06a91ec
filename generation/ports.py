"""The ports generation consumes: a chat model that can be held to a JSON schema."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol, TypedDict


class Message(TypedDict):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatModel(Protocol):
    """A chat LLM; ``name`` identifies the exact model (tag or file) for provenance."""

    name: str

    async def complete(
        self, messages: Sequence[Message], *, schema: Mapping[str, Any] | None = None, max_tokens: int = 512
    ) -> str:
        """The assistant's reply. With ``schema``, decoding is constrained to JSON of that schema (the
        caller still validates it). Deterministic settings (temperature 0). Raises ``ModelUnavailable``
        when the model cannot be reached or loaded, ``PlanError`` when it refuses the request (a prompt
        longer than its context)."""
        ...

    async def ping(self) -> None:
        """Check the model can be reached without generating (health checks); raises ``ModelUnavailable``."""
        ...

    async def aclose(self) -> None:
        """Release the model or the connection."""
        ...


class GrammarChatModel(ChatModel, Protocol):
    """A chat model that can also hold decoding to a GBNF grammar (llama.cpp's): the Planner's lines
    reply format (``generation.lines``) needs one."""

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        schema: Mapping[str, Any] | None = None,
        max_tokens: int = 512,
        grammar: str | None = None,
    ) -> str:
        """As ``ChatModel.complete``; with ``grammar`` (GBNF text), decoding follows that grammar instead."""
        ...
