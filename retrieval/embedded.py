"""The zero-setup backends: SQLite + tantivy + usearch for chunks, SQLite tables for the graph.

Chunks, vectors and ingest state live in SQLite (the source of truth, written in one transaction
per document). BM25 is a tantivy index beside it (``retrieval.keyword``) and nearest neighbours an
HNSW index (``retrieval.vectors``); each is checked against SQLite when first used and brought in
line with it (after a crash between the writes). Each SQLite file's I/O runs on a dedicated thread.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

from core.types import Chunk, IncidentNode, Relation, SourceDocument
from retrieval._sqlite import SqliteWorker
from retrieval.keyword import ChunkText, KeywordIndex, RunbookText
from retrieval.lexical import runbook_about, runbook_names
from retrieval.ports import Hits
from retrieval.vectors import VectorIndex

_INDEX_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents(
    doc_id TEXT PRIMARY KEY, source TEXT NOT NULL, title TEXT NOT NULL, kind TEXT NOT NULL,
    content_hash TEXT NOT NULL, incidents TEXT NOT NULL, ingested_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS chunks(
    rowid INTEGER PRIMARY KEY, chunk_id TEXT NOT NULL UNIQUE,
    doc_id TEXT NOT NULL REFERENCES documents(doc_id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL, heading_path TEXT NOT NULL, text TEXT NOT NULL, vec BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks(doc_id);
"""
_INDEX_FORMAT = 3  # 1 used SQLite FTS5 for BM25, 2 numpy over term-count blobs


class EmbeddedChunkIndex:
    """Chunks in SQLite, BM25 by tantivy in ``<name>.keywords/`` and HNSW by usearch in ``<name>.vectors``
    beside it; the vectors of given documents (``dense(within=…)``) are compared exactly, with numpy.

    Another process's writes are seen by BM25 at once, by the HNSW index when this one reopens.
    """

    def __init__(self, path: Path) -> None:
        self._db = SqliteWorker(path, _INDEX_SCHEMA, _INDEX_FORMAT)
        self._keywords_path = path.with_name(f"{path.stem}.keywords")
        self._keywords: KeywordIndex | None = None
        self._vectors_path = path.with_name(f"{path.stem}.vectors")
        self._vectors: VectorIndex | None = None
        self._opening = asyncio.Lock()  # concurrent first uses open and reconcile each index once

    async def document_hashes(self, source: str | None = None) -> dict[str, str]:
        def read(conn: sqlite3.Connection) -> dict[str, str]:
            if source is None:
                rows = conn.execute("SELECT doc_id, content_hash FROM documents")
            else:
                rows = conn.execute("SELECT doc_id, content_hash FROM documents WHERE source = ?", (source,))
            return dict(rows.fetchall())

        return await self._db.run(read)

    async def replace_document(
        self, doc: SourceDocument, chunks: Sequence[Chunk], vectors: np.ndarray, incidents: Sequence[IncidentNode]
    ) -> None:
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)

        def write(conn: sqlite3.Connection) -> tuple[list[int], list[int]]:
            removed = _delete_documents(conn, [doc.doc_id])
            conn.execute(
                "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    doc.doc_id,
                    doc.source,
                    doc.title,
                    doc.kind,
                    doc.content_hash,
                    json.dumps([n.model_dump(exclude={"node_id"}) for n in incidents]),
                    time.time(),
                ),
            )
            conn.executemany(
                "INSERT INTO chunks(chunk_id, doc_id, ordinal, heading_path, text, vec) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (c.chunk_id, doc.doc_id, c.ordinal, json.dumps(c.heading_path), c.text, vec.tobytes())
                    for c, vec in zip(chunks, vecs, strict=True)
                ],
            )
            rows = conn.execute("SELECT rowid FROM chunks WHERE doc_id = ? ORDER BY ordinal", (doc.doc_id,))
            return removed, [r for (r,) in rows]

        keywords = await self._keyword_index()
        vectors_index = await self._vector_index()
        removed, rowids = await self._db.transaction(write)
        await asyncio.to_thread(vectors_index.replace, removed, rowids, vecs)
        texts = [ChunkText(c.chunk_id, c.context, c.text) for c in chunks]
        runbook = _runbook_text(doc.doc_id, doc.title, doc.content_hash, incidents)
        await asyncio.to_thread(keywords.replace, doc.doc_id, texts, runbook)

    async def remove_documents(self, doc_ids: Collection[str]) -> None:
        keywords = await self._keyword_index()
        vectors_index = await self._vector_index()
        removed = await self._db.transaction(lambda conn: _delete_documents(conn, list(doc_ids)))
        await asyncio.to_thread(vectors_index.replace, removed, [], np.zeros((0, 0), dtype=np.float32))
        await asyncio.to_thread(keywords.remove, list(doc_ids))

    async def spelling(self, query: str) -> str:
        keywords = await self._keyword_index()
        return await asyncio.to_thread(keywords.spelling, query)

    async def lexical(self, query: str, k: int) -> Hits:
        keywords = await self._keyword_index()
        return await asyncio.to_thread(keywords.search_chunks, query, k)

    async def runbooks(self, query: str, k: int) -> Hits:
        keywords = await self._keyword_index()
        return await asyncio.to_thread(keywords.search_runbooks, query, k)

    async def _keyword_index(self) -> KeywordIndex:
        """The keyword index, brought in line with SQLite on first use (after a crash between the two)."""
        async with self._opening:
            if self._keywords is None:
                keywords = await asyncio.to_thread(KeywordIndex, self._keywords_path)
                await self._reconcile(keywords)
                self._keywords = keywords
        return self._keywords

    async def _reconcile(self, keywords: KeywordIndex) -> None:
        indexed = await asyncio.to_thread(keywords.runbook_hashes)
        stored = await self.document_hashes()
        await asyncio.to_thread(keywords.remove, [d for d in indexed if d not in stored])
        for doc_id in [d for d, h in stored.items() if indexed.get(d) != h]:

            def read(conn: sqlite3.Connection, doc_id: str = doc_id) -> tuple[list[ChunkText], RunbookText]:
                title, content_hash, blob = conn.execute(
                    "SELECT title, content_hash, incidents FROM documents WHERE doc_id = ?", (doc_id,)
                ).fetchone()
                rows = conn.execute(
                    "SELECT chunk_id, heading_path, text FROM chunks WHERE doc_id = ? ORDER BY ordinal", (doc_id,)
                )
                texts = [ChunkText(cid, " > ".join((title, *json.loads(path))), text) for cid, path, text in rows]
                incidents = [IncidentNode.model_validate(n) for n in json.loads(blob)]
                return texts, _runbook_text(doc_id, title, content_hash, incidents)

            texts, runbook = await self._db.run(read)
            await asyncio.to_thread(keywords.replace, doc_id, texts, runbook)
        await asyncio.to_thread(keywords.flush)

    async def dense(self, vector: np.ndarray, k: int, within: Collection[str] | None = None) -> Hits:
        if k <= 0:
            return []
        query = np.asarray(vector, dtype=np.float32)
        vectors_index = await self._vector_index()
        if within is None:
            found = await asyncio.to_thread(vectors_index.search, query, k)
            chunk_ids = await self._db.run(lambda conn: _chunk_ids(conn, [key for key, _ in found]))
        else:  # exact, over the stored vectors of these documents' chunks
            chunk_ids = await self._db.run(lambda conn: _rows_of(conn, list(within)))
            found = await asyncio.to_thread(vectors_index.score, query, list(chunk_ids))
            found = sorted(found, key=lambda hit: -hit[1])[:k]
        return [(chunk_ids[key], score) for key, score in found if key in chunk_ids]

    async def _vector_index(self) -> VectorIndex:
        """The HNSW index, brought in line with SQLite's rows on first use (after a crash between the two)."""
        async with self._opening:
            if self._vectors is None:
                vectors_index = await asyncio.to_thread(VectorIndex, self._vectors_path)
                held = await asyncio.to_thread(vectors_index.keys)
                stored = set(await self._db.run(lambda conn: [r for (r,) in conn.execute("SELECT rowid FROM chunks")]))
                missing = sorted(stored - held)
                for start in range(0, len(missing), 1000):
                    batch = missing[start : start + 1000]

                    def read(conn: sqlite3.Connection, batch: list[int] = batch) -> np.ndarray:
                        sql = f"SELECT vec FROM chunks WHERE rowid IN ({','.join('?' * len(batch))}) ORDER BY rowid"
                        return np.vstack([np.frombuffer(v, dtype=np.float32) for (v,) in conn.execute(sql, batch)])

                    await asyncio.to_thread(vectors_index.replace, [], batch, await self._db.run(read))
                if stale := held - stored:
                    await asyncio.to_thread(vectors_index.replace, stale, [], np.zeros((0, 0), dtype=np.float32))
                await asyncio.to_thread(vectors_index.flush)
                self._vectors = vectors_index
        return self._vectors

    async def chunks(self, chunk_ids: Collection[str]) -> dict[str, Chunk]:
        wanted = list(chunk_ids)

        def read(conn: sqlite3.Connection) -> dict[str, Chunk]:
            found: dict[str, Chunk] = {}
            for start in range(0, len(wanted), 500):
                batch = wanted[start : start + 500]
                rows = conn.execute(
                    "SELECT c.chunk_id, c.doc_id, c.ordinal, d.title, c.heading_path, c.text FROM chunks c "
                    f"JOIN documents d USING(doc_id) WHERE c.chunk_id IN ({','.join('?' * len(batch))})",
                    batch,
                )
                for cid, doc_id, ordinal, title, path, text in rows:
                    found[cid] = Chunk(
                        chunk_id=cid, doc_id=doc_id, ordinal=ordinal, title=title,
                        heading_path=tuple(json.loads(path)), text=text,
                    )  # fmt: skip
            return found

        return await self._db.run(read)

    async def incident_candidates(self) -> list[IncidentNode]:
        def read(conn: sqlite3.Connection) -> list[IncidentNode]:
            rows = conn.execute("SELECT incidents FROM documents ORDER BY doc_id")
            return [IncidentNode.model_validate(n) for (blob,) in rows for n in json.loads(blob)]

        return await self._db.run(read)

    async def counts(self) -> dict[str, int]:
        def read(conn: sqlite3.Connection) -> dict[str, int]:
            docs = conn.execute("SELECT count(*) FROM documents").fetchone()[0]
            chunks = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
            return {"documents": docs, "chunks": chunks}

        return await self._db.run(read)

    async def aclose(self) -> None:
        if self._keywords is not None:
            await asyncio.to_thread(self._keywords.flush)
        if self._vectors is not None:
            await asyncio.to_thread(self._vectors.flush)
        await self._db.aclose()


def _runbook_text(doc_id: str, title: str, content_hash: str, incidents: Sequence[IncidentNode]) -> RunbookText:
    return RunbookText(doc_id, content_hash, runbook_names(doc_id, title, incidents), runbook_about(incidents))


def _delete_documents(conn: sqlite3.Connection, doc_ids: list[str]) -> list[int]:
    """Delete the documents (their chunks cascade); returns the rowids of the chunks deleted."""
    removed = [r for d in doc_ids for (r,) in conn.execute("SELECT rowid FROM chunks WHERE doc_id = ?", (d,))]
    conn.executemany("DELETE FROM documents WHERE doc_id = ?", [(d,) for d in doc_ids])
    return removed


def _chunk_ids(conn: sqlite3.Connection, rowids: list[int]) -> dict[int, str]:
    sql = f"SELECT rowid, chunk_id FROM chunks WHERE rowid IN ({','.join('?' * len(rowids))})"
    return dict(conn.execute(sql, rowids).fetchall()) if rowids else {}


def _rows_of(conn: sqlite3.Connection, doc_ids: list[str]) -> dict[int, str]:
    """rowid → chunk_id of every chunk of ``doc_ids``."""
    sql = f"SELECT rowid, chunk_id FROM chunks WHERE doc_id IN ({','.join('?' * len(doc_ids))})"
    return dict(conn.execute(sql, doc_ids).fetchall()) if doc_ids else {}


_GRAPH_FORMAT = 1
_GRAPH_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes(node_id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS node_keys(key TEXT NOT NULL, node_id TEXT NOT NULL REFERENCES nodes ON DELETE CASCADE);
CREATE INDEX IF NOT EXISTS node_keys_by_key ON node_keys(key);
CREATE TABLE IF NOT EXISTS node_chunks(chunk_id TEXT NOT NULL,
    node_id TEXT NOT NULL REFERENCES nodes ON DELETE CASCADE);
CREATE INDEX IF NOT EXISTS node_chunks_by_chunk ON node_chunks(chunk_id);
CREATE TABLE IF NOT EXISTS node_components(component TEXT NOT NULL,
    node_id TEXT NOT NULL REFERENCES nodes ON DELETE CASCADE);
CREATE INDEX IF NOT EXISTS node_components_by_component ON node_components(component);
CREATE TABLE IF NOT EXISTS relations(src TEXT NOT NULL REFERENCES nodes ON DELETE CASCADE,
    dst TEXT NOT NULL REFERENCES nodes ON DELETE CASCADE, kind TEXT NOT NULL, reason TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS relations_by_src ON relations(src);
CREATE INDEX IF NOT EXISTS relations_by_dst ON relations(dst);
"""


class EmbeddedGraphStore:
    """Incident nodes as JSON rows with lookup tables for names, chunks, components and relations."""

    def __init__(self, path: Path) -> None:
        self._db = SqliteWorker(path, _GRAPH_SCHEMA, _GRAPH_FORMAT)

    async def built_from(self) -> str | None:
        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT value FROM meta WHERE key = 'built_from'").fetchone()
            return row[0] if row else None

        return await self._db.run(read)

    async def replace_all(self, nodes: Sequence[IncidentNode], relations: Sequence[Relation], built_from: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            for table in ("relations", "node_components", "node_chunks", "node_keys", "nodes"):
                conn.execute(f"DELETE FROM {table}")
            for node in nodes:
                conn.execute(
                    "INSERT INTO nodes VALUES (?, ?)", (node.node_id, node.model_dump_json(exclude={"node_id"}))
                )
                conn.executemany("INSERT INTO node_keys VALUES (?, ?)", [(k, node.node_id) for k in node.lookup_keys()])
                conn.executemany("INSERT INTO node_chunks VALUES (?, ?)", [(c, node.node_id) for c in node.chunk_ids])
                conn.executemany(
                    "INSERT INTO node_components VALUES (?, ?)", [(c, node.node_id) for c in set(node.components)]
                )
            conn.executemany(
                "INSERT INTO relations VALUES (?, ?, ?, ?)", [(r.src, r.dst, r.kind, r.reason) for r in relations]
            )
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('built_from', ?)", (built_from,))

        await self._db.transaction(write)

    async def named(self, keys: Collection[str]) -> list[IncidentNode]:
        return await self._select("SELECT DISTINCT node_id FROM node_keys WHERE key IN ({})", list(keys))

    async def for_chunks(self, chunk_ids: Collection[str]) -> list[IncidentNode]:
        return await self._select("SELECT DISTINCT node_id FROM node_chunks WHERE chunk_id IN ({})", list(chunk_ids))

    async def neighbours(self, node_ids: Collection[str]) -> list[IncidentNode]:
        ids = list(node_ids)
        query = "SELECT dst FROM relations WHERE src IN ({0}) UNION SELECT src FROM relations WHERE dst IN ({0})"
        found = await self._select(query, ids, repeat=2)
        return [n for n in found if n.node_id not in set(ids)]

    async def _select(self, id_query: str, params: list[str], repeat: int = 1) -> list[IncidentNode]:
        if not params:
            return []

        def read(conn: sqlite3.Connection) -> list[IncidentNode]:
            marks = ",".join("?" * len(params))
            sql = f"SELECT node_id, body FROM nodes WHERE node_id IN ({id_query.format(marks)}) ORDER BY node_id"
            return [IncidentNode.model_validate_json(body) for _, body in conn.execute(sql, params * repeat)]

        return await self._db.run(read)

    async def counts(self) -> dict[str, int]:
        def read(conn: sqlite3.Connection) -> dict[str, int]:
            one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
            return {
                "nodes": one("SELECT count(*) FROM nodes"),
                "relations": one("SELECT count(*) FROM relations"),
                "components": one("SELECT count(DISTINCT component) FROM node_components"),
            }

        return await self._db.run(read)

    async def aclose(self) -> None:
        await self._db.aclose()
