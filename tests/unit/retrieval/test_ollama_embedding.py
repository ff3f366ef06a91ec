"""Ollama embeddings through the real client against a loopback Ollama server."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigError, ModelUnavailable
from core.settings import OllamaSettings
from retrieval.ollama_embedding import OllamaEmbedder
from tests.fakes.ollama import fake_ollama, json_reply


async def test_vectors_are_normalised_and_requests_name_the_model() -> None:
    async with fake_ollama(json_reply({}), models=("all-minilm",), dim=4) as server:
        embedder = OllamaEmbedder(OllamaSettings(host=server.url), "all-minilm", dim=4)
        vectors = await embedder.embed(["etcd leader lost", "disk full"])
        await embedder.aclose()
    assert vectors.shape == (2, 4) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    assert server.requests == [("/api/embed", server.requests[0][1])]
    assert server.requests[0][1]["model"] == "all-minilm" and server.requests[0][1]["input"] == [
        "etcd leader lost",
        "disk full",
    ]


async def test_a_size_mismatch_says_which_setting_to_change() -> None:
    async with fake_ollama(json_reply({}), models=("all-minilm",), dim=4) as server:
        embedder = OllamaEmbedder(OllamaSettings(host=server.url), "all-minilm", dim=384)
        with pytest.raises(ConfigError, match="OPSFLOW_RETRIEVAL__EMBEDDING_DIM"):
            await embedder.embed(["x"])
        await embedder.aclose()


async def test_a_missing_model_or_server_is_model_unavailable() -> None:
    async with fake_ollama(json_reply({}), models=("other",)) as server:
        embedder = OllamaEmbedder(OllamaSettings(host=server.url), "all-minilm", dim=2)
        with pytest.raises(ModelUnavailable, match="all-minilm"):
            await embedder.embed(["x"])
        await embedder.aclose()
    down = OllamaEmbedder(OllamaSettings(host="http://127.0.0.1:9", timeout_s=2), "all-minilm", dim=2)
    with pytest.raises(ModelUnavailable, match="unreachable"):
        await down.embed(["x"])
    await down.aclose()


async def test_the_knowledge_base_can_embed_through_ollama(tmp_path, sample_copy) -> None:
    from bot.app import open_knowledge
    from bot.ingest import ingest
    from core.settings import Settings

    async with fake_ollama(json_reply({}), models=("all-minilm",), dim=11) as server:
        settings = Settings(
            data_dir=tmp_path / "data",
            retrieval={"embedding_backend": "ollama", "embedding_model": "all-minilm", "embedding_dim": 11},
            ollama={"host": server.url},
            _env_file=None,
        )
        async with open_knowledge(settings) as kb:
            report = await ingest([sample_copy / "database"], kb.builder, max_bytes=1_000_000)
            result = await kb.retriever.retrieve("FATAL: sorry, too many clients already")
    assert len(report.added) == 4
    assert result.passages[0].chunk.doc_id == "PostgresTooManyConnections.md"  # relative to the ingested folder
    assert {path for path, _ in server.requests} == {"/api/embed"}
