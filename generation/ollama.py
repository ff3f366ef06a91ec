"""Ollama chat adapter (official async client): JSON-schema output, explicit timeouts, keep_alive."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx
import ollama

from core.errors import ModelUnavailable
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


class OllamaChatModel:
    """A model served by Ollama; the client is created on first use."""

    def __init__(self, cfg: OllamaSettings) -> None:
        self._cfg = cfg
        self._client: Any = None
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
        with map_ollama_errors(self._cfg.host, self._cfg.model):
            response = await self._ollama().chat(
                model=self._cfg.model,
                messages=list(messages),
                format=dict(schema) if schema is not None else None,
                options={"temperature": 0, "num_predict": max_tokens},
                keep_alive=self._cfg.keep_alive,
            )
        return str(response.message.content or "")

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
