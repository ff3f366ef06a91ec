"""The ONNX embedder against the model it was exported from (real weights from the package)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.errors import ModelUnavailable
from retrieval.embedding import OnnxEmbedder, packaged_minilm_path


async def test_matches_sentence_transformers_and_is_normalised(model_cache: Path) -> None:
    from sentence_transformers import SentenceTransformer

    texts = ["etcd member down", "How do I triage KubeAPIDown after 15 minutes?", "word " * 400]
    ours = await OnnxEmbedder(model_cache).embed(texts)
    reference = SentenceTransformer(str(packaged_minilm_path()), device="cpu").encode(texts, normalize_embeddings=True)
    assert ours.shape == (3, 384) and ours.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose((ours * reference).sum(axis=1), 1.0, atol=1e-4)


async def test_related_texts_are_closer_than_unrelated_ones(model_cache: Path) -> None:
    a, b, c = await OnnxEmbedder(model_cache).embed(
        ["disk is full on the node", "no space left on device", "TLS certificate expired"]
    )
    assert a @ b > a @ c


async def test_empty_input_gives_an_empty_matrix(tmp_path: Path) -> None:
    assert (await OnnxEmbedder(tmp_path).embed([])).shape == (0, 384)


async def test_a_directory_without_a_model_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="not a sentence-transformers model"):
        await OnnxEmbedder(tmp_path / "cache", tmp_path).embed(["x"])
