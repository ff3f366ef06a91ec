from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from core.errors import ConfigError
from retrieval.embedded import EmbeddedChunkIndex
from retrieval.keyword import ChunkText, KeywordIndex, RunbookText
from tests.contract.chunk_index import make_doc, unit


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


def _lose_one_and_keep_a_stale_one(tmp_path: Path) -> None:
    """What a crash between the SQLite commit and the keyword index's leaves: one missing, one stale."""
    shutil.rmtree(tmp_path / "index.keywords")
    with sqlite3.connect(tmp_path / "index.sqlite") as conn:
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("DELETE FROM documents WHERE doc_id = 'DiskLatency.md'")
    stale = KeywordIndex(tmp_path / "index.keywords")
    chunk = ChunkText("DiskLatency.md#0", "", "disk latency high")
    stale.replace("DiskLatency.md", [chunk], RunbookText("DiskLatency.md", "h", ("DiskLatency",), ""))
    stale.flush()


async def test_the_keyword_index_is_brought_in_line_with_sqlite_when_opened(tmp_path: Path) -> None:
    index = EmbeddedChunkIndex(tmp_path / "index.sqlite")
    for doc_id, text in (("HostDiskFull.md", "disk full on host"), ("DiskLatency.md", "disk latency high")):
        doc, chunks, incidents = make_doc(doc_id, [text])
        await index.replace_document(doc, chunks, np.stack([unit(1)]), incidents)
    await index.aclose()
    await asyncio.to_thread(_lose_one_and_keep_a_stale_one, tmp_path)
    index = EmbeddedChunkIndex(tmp_path / "index.sqlite")
    try:
        assert [c for c, _ in await index.lexical("disk", 5)] == ["HostDiskFull.md#0"]
        assert [d for d, _ in await index.runbooks("disk", 5)] == ["HostDiskFull.md"]
    finally:
        await index.aclose()
