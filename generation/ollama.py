"""Ollama chat adapter (official async client): JSON-schema output, explicit timeouts, keep_alive, and a
context window sized to each request.

Without ``num_ctx`` Ollama runs a model in its default window (2,048 tokens before v0.15.5, 4,096 on
GPUs under 24 GiB after) and drops the *start* of a longer prompt, system prompt first, with only a
server-side warning. So every request sends ``num_ctx`` covering its prompt and reply, capped by the
model's own context length from ``/api/show``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx
import ollama

from core.errors import ModelUnavailable, PlanError
from core.settings import OllamaSettings
from generation.ports import Message


@contextlib.contextmanager
def map_ollama_errors(host: str, model: str) -> Iterator[None]:
    """Ollama's and the transport's failures as ``ModelUnavailable`` naming host and model."""
    try:
        yield
    except ollama.ResponseError as exc:
        raise ModelUnavailable(
            f"Ollama at {host} refused model {model!r} ({exc.status_code}: {exc.error})", backend="ollama"
        ) from exc
    except (httpx.HTTPError, ConnectionError) as exc:
        raise ModelUnavailable(f"Ollama at {host} is unreachable for model {model!r}: {exc}", backend="ollama") from exc


# No tokenizer on this side of the API: a token is taken as 3 characters, fewer than English's ~4, so
# the window errs large; plus the chat template's few tokens around each message.
_CHARS_PER_TOKEN = 3
_TOKENS_PER_MESSAGE = 8
# Windows are powers of two from this up: Ollama reloads the model whenever num_ctx changes, so
# requests of similar size share one loaded runner.
_MIN_CTX = 2048


def estimate_tokens(messages: Sequence[Message]) -> int:
    """An upper estimate of the prompt's tokens (characters / 3, plus the template's per message)."""
    chars = sum(len(m["content"]) for m in messages)
    return math.ceil(chars / _CHARS_PER_TOKEN) + _TOKENS_PER_MESSAGE * len(messages)


def context_window(prompt_tokens: int, max_tokens: int, context_length: int | None) -> int:
    """``num_ctx`` for a prompt of ``prompt_tokens`` and a reply of up to ``max_tokens``: the next power
    of two from 2,048 up, at most ``context_length`` (the model's, when known)."""
    window = max(_MIN_CTX, 1 << (prompt_tokens + max_tokens - 1).bit_length())
    return window if context_length is None else min(window, context_length)


def model_context_length(model_info: Mapping[str, Any] | None) -> int | None:
    """The ``<architecture>.context_length`` of ``/api/show``'s ``model_info``; None when absent."""
    info = model_info or {}
    value = info.get(f"{info.get('general.architecture')}.context_length")
    return int(value) if isinstance(value, int | float) and value > 0 else None


class OllamaChatModel:
    """A model served by Ollama; the client is created on first use.

    Each request's ``num_ctx`` comes from ``context_window``; the model's context length is read from
    ``/api/show`` on the first ``complete`` and kept (one adapter serves one model tag). A prompt
    estimated at the model's whole context or more raises ``PlanError`` before anything is sent.
    """

    def __init__(self, cfg: OllamaSettings) -> None:
        self._cfg = cfg
        self._client: Any = None
        self._context_length: int | None = None
        self._context_known = False
        self.name = f"ollama:{cfg.model}"

    def _ollama(self) -> Any:
        if self._client is None:
            # host and timeout passed explicitly: the client would read OLLAMA_HOST and default to no timeout.
            self._client = ollama.AsyncClient(
                host=self._cfg.host, timeout=httpx.Timeout(self._cfg.timeout_s, connect=5.0)
            )
        return self._client

    async def complete(
        self, messages: Sequence[Message], *, schema: Mapping[str, Any] | None = None, max_tokens: int = 512
    ) -> str:
        prompt_tokens = estimate_tokens(messages)
        with map_ollama_errors(self._cfg.host, self._cfg.model):
            context_length = await self._model_context_length()
            if context_length is not None and prompt_tokens >= context_length:
                raise PlanError(
                    f"{self.name} cannot take this prompt: about {prompt_tokens} tokens, "
                    f"its context length is {context_length}"
                )
            num_ctx = context_window(prompt_tokens, max_tokens, context_length)
            response = await self._ollama().chat(
                model=self._cfg.model,
                messages=list(messages),
                format=dict(schema) if schema is not None else None,
                options={"temperature": 0, "num_predict": max_tokens, "num_ctx": num_ctx},
                keep_alive=self._cfg.keep_alive,
            )
        return str(response.message.content or "")

    async def _model_context_length(self) -> int | None:
        if not self._context_known:
            shown = await self._ollama().show(self._cfg.model)
            self._context_length, self._context_known = model_context_length(shown.modelinfo), True
        return self._context_length

    async def ping(self) -> None:
        with map_ollama_errors(self._cfg.host, self._cfg.model):
            listed = await self._ollama().list()
        names = {m.model for m in listed.models}
        if self._cfg.model not in names and f"{self._cfg.model}:latest" not in names:
            raise ModelUnavailable(
                f"Ollama at {self._cfg.host} does not have {self._cfg.model} (ollama pull it)", backend="ollama"
            )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
