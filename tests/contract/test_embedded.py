"""The embedded (SQLite) backends against the shared contracts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from retrieval.embedded import EmbeddedChunkIndex, EmbeddedGraphStore
from tests.contract.chunk_index import ChunkIndexContract
from tests.contract.graph_store import GraphStoreContract


class TestEmbeddedChunkIndex(ChunkIndexContract):
    @pytest.fixture
    async def index(self, tmp_path: Path) -> AsyncIterator[EmbeddedChunkIndex]:
        index = EmbeddedChunkIndex(tmp_path / "index.sqlite")
        yield index
        await index.aclose()


class TestEmbeddedGraphStore(GraphStoreContract):
    @pytest.fixture
    async def graph(self, tmp_path: Path) -> AsyncIterator[EmbeddedGraphStore]:
        graph = EmbeddedGraphStore(tmp_path / "graph.sqlite")
        yield graph
        await graph.aclose()
