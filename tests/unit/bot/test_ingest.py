"""Ingest end to end on the embedded backends: incremental, tolerant of bad input, crash-safe."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from bot.app import open_knowledge
from bot.ingest import ingest
from core.settings import Settings


async def run_ingest(settings: Settings, *paths: Path):
    async with open_knowledge(settings) as kb:
        report = await ingest(list(paths), kb.builder, max_bytes=settings.ingest.max_document_bytes)
        return report, {**await kb.index.counts(), **await kb.graph.counts()}


async def test_first_ingest_then_nothing_changed(settings: Settings, sample_copy: Path) -> None:
    first, counts = await run_ingest(settings, sample_copy)
    assert len(first.added) == 13 and not first.failed and not first.partial
    assert counts["documents"] == 13 and counts["chunks"] == first.chunks
    assert counts["nodes"] >= 11  # every structured runbook names one incident
    again, counts_again = await run_ingest(settings, sample_copy)
    assert (again.added, again.changed, again.removed, again.unchanged, again.chunks) == ([], [], [], 13, 0)
    assert again.graph is None
    assert counts_again == counts


async def test_changed_documents_are_replaced_and_gone_ones_removed(settings: Settings, sample_copy: Path) -> None:
    await run_ingest(settings, sample_copy)
    crash = sample_copy / "kubernetes" / "KubePodCrashLooping.md"
    crash.write_text(crash.read_text() + "\n## Notes\n\nPage the owning team after two rollbacks.\n")
    (sample_copy / "database" / "RedisEvictionsHigh.md").unlink()
    report, counts = await run_ingest(settings, sample_copy)
    assert report.changed == ["kubernetes/KubePodCrashLooping.md"]
    assert report.removed == ["database/RedisEvictionsHigh.md"]
    assert report.graph is not None
    assert counts["documents"] == 12
    async with open_knowledge(settings) as kb:
        result = await kb.retriever.retrieve("page the owning team after two rollbacks")
        assert result.passages[0].chunk.doc_id == "kubernetes/KubePodCrashLooping.md"
        assert await kb.graph.named(["redis evictions high"]) == []


async def test_sources_do_not_remove_each_others_documents(settings: Settings, sample_copy: Path) -> None:
    await run_ingest(settings, sample_copy / "database")
    report, counts = await run_ingest(settings, sample_copy / "network")
    assert report.removed == [] and counts["documents"] == 4 + 4


async def test_bad_documents_are_reported_and_the_rest_ingested(settings: Settings, tmp_path: Path) -> None:
    docs = tmp_path / "mixed"
    docs.mkdir()
    (docs / "good.md").write_text(
        "# DiskFull\n\n## Meaning\n\nThe disk is full.\n\n## Mitigation\n\nDelete old logs.\n"
    )
    (docs / "empty.md").write_text("")
    (docs / "image.md").write_bytes(b"\x89PNG\x00\x00\x00")
    (docs / "latin1.txt").write_bytes("Störung".encode("latin-1"))
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 nonsense")
    (docs / "huge.md").write_text("word " * 1_100_000)  # 5.5 MB, over the 5 MB default
    (docs / "notes.docx").write_bytes(b"PK")
    report, counts = await run_ingest(settings, docs)
    assert report.added == ["good.md"]
    assert {doc for doc, _ in report.failed} == {"empty.md", "image.md", "latin1.txt", "broken.pdf", "huge.md"}
    assert dict(report.failed)["huge.md"].startswith("oversized")
    assert report.ignored == [("notes.docx", "unsupported type .docx")]
    assert report.partial
    assert counts["documents"] == 1


def index_is_consistent(db: Path) -> tuple[int, int]:
    """Every document has chunks and every chunk its vector; returns (documents, chunks)."""
    with sqlite3.connect(db) as conn:
        docs = conn.execute("SELECT count(*) FROM documents").fetchone()[0]
        empty = conn.execute(
            "SELECT count(*) FROM documents WHERE doc_id NOT IN (SELECT doc_id FROM chunks)"
        ).fetchone()[0]
        chunks, broken = conn.execute("SELECT count(*), sum(length(vec) != 384 * 4) FROM chunks").fetchone()
    assert empty == 0 and not broken
    return docs, chunks


async def test_a_killed_ingest_leaves_whole_documents_and_resumes(settings: Settings, tmp_path: Path) -> None:
    docs = tmp_path / "many"
    docs.mkdir()
    for i in range(200):
        body = "\n".join(f"- step {j} for incident {i}: check component {j} and restart it" for j in range(40))
        (docs / f"Incident{i:02d}.md").write_text(
            f"# Incident{i:02d}\n\n## Meaning\n\nBroken {i}.\n\n## Mitigation\n\n{body}\n"
        )
    env = {**os.environ, "OPSFLOW_DATA_DIR": str(settings.data_dir)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "ingest",
        str(docs),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = settings.data_dir / "index.sqlite"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.returncode is None:
        with contextlib.suppress(sqlite3.OperationalError):  # the schema may not be there yet
            if db.exists() and index_is_consistent(db)[0] >= 3:
                break
        await asyncio.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    written, _ = index_is_consistent(db)
    assert 3 <= written < 200, "the ingest should have been killed half-way"
    report, counts = await run_ingest(settings, docs)
    assert len(report.added) == 200 - written and report.unchanged == written
    assert counts["documents"] == 200 and counts["nodes"] == 200
    assert index_is_consistent(db)[0] == 200


async def test_chunks_embedded_together_keep_their_own_vectors(settings: Settings, sample_copy: Path) -> None:
    from retrieval.knowledge import embedding_text

    await run_ingest(settings, sample_copy)  # one batch: every document's chunks in one embedding call
    async with open_knowledge(settings) as kb:
        ids = [f"{doc}#0" for doc in ("database/PostgresTooManyConnections.md", "kubernetes/KubePodCrashLooping.md")]
        for chunk in (await kb.index.chunks(ids)).values():
            vector = (await kb.embedder.embed([embedding_text(chunk)]))[0]
            (found, cosine), *_ = await kb.index.dense(vector, 1)
            assert found == chunk.chunk_id and cosine > 0.999
