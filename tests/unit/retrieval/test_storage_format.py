from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from core.errors import ConfigError
from retrieval.embedded import EmbeddedChunkIndex


async def test_an_index_from_another_format_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE chunks(chunk_id TEXT)")
    index = EmbeddedChunkIndex(path)
    with pytest.raises(ConfigError, match="delete it and run `opsflow ingest` again"):
        await index.counts()
    await index.aclose()


async def test_a_new_index_is_created_and_reopened(tmp_path: Path) -> None:
    for _ in range(2):
        index = EmbeddedChunkIndex(tmp_path / "index.sqlite")
        assert await index.counts() == {"documents": 0, "chunks": 0}
        await index.aclose()
