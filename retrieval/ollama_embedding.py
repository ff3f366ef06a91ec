"""Embeddings served by Ollama (``/api/embed``), for deployments that keep models out of the bot.

The vectors are L2-normalised here, as the index's cosine search expects. Changing the embedding
model means re-ingesting: vectors of different models are not comparable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np
import ollama

from core.errors import ConfigError, ModelUnavailable
from core.settings import OllamaSettings


class OllamaEmbedder:
    """Satisfies ``retrieval.ports.Embedder``; ``dim`` is the configured size, checked on every reply."""

    def __init__(self, cfg: OllamaSettings, model: str, *, dim: int) -> None:
        self._cfg = cfg
        self._model = model
        self._client: Any = None
        self.dim = dim

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._client is None:
            timeout = httpx.Timeout(self._cfg.timeout_s, connect=5.0)
            self._client = ollama.AsyncClient(host=self._cfg.host, timeout=timeout)
        try:
            response = await self._client.embed(model=self._model, input=list(texts), keep_alive=self._cfg.keep_alive)
        except ollama.ResponseError as exc:
            message = (
                f"Ollama at {self._cfg.host} refused embedding model {self._model!r} ({exc.status_code}: {exc.error})"
            )
            raise ModelUnavailable(message, backend="ollama") from exc
        except (httpx.HTTPError, ConnectionError) as exc:
            message = f"Ollama at {self._cfg.host} is unreachable for embedding model {self._model!r}: {exc}"
            raise ModelUnavailable(message, backend="ollama") from exc
        vectors = np.asarray(response.embeddings, dtype=np.float32)
        if vectors.shape != (len(texts), self.dim):
            raise ConfigError(
                f"{self._model!r} returned vectors of shape {vectors.shape}, expected ({len(texts)}, {self.dim}): "
                "set OPSFLOW_RETRIEVAL__EMBEDDING_DIM to the model's size and run `opsflow ingest` again"
            )
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
