"""The ingest use case: sources → changed documents → knowledge base, with a report.

Unchanged documents (same content hash) are skipped before parsing; documents gone from a source
are removed; bad documents are reported and skipped, and the run goes on. Documents read in this run
in which no procedure was found are listed with what was found instead: the bot can cite them but
cannot build a workflow from them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from connectors.documents import content_hash, list_documents, parse_document, read_bytes
from core.errors import DocumentError
from core.types import SourceDocument
from retrieval.incidents import no_procedure
from retrieval.knowledge import GraphReport, KnowledgeBuilder


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    chunks: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    no_procedure: list[tuple[str, str]] = field(default_factory=list)  # (doc_id, what was found instead)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    graph: GraphReport | None = None
    seconds: float = 0.0

    @property
    def partial(self) -> bool:
        """Some documents could not be ingested."""
        return bool(self.failed)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "partial": self.partial}


EMBED_BATCH = 16  # documents parsed before their chunks are embedded together (about 80 chunks)


class Progress(Protocol):
    """Told how many files there are, then once per file handled."""

    def start(self, total: int) -> None: ...

    def advance(self, doc_id: str) -> None: ...


async def ingest(
    paths: Sequence[Path], builder: KnowledgeBuilder, *, max_bytes: int, progress: Progress | None = None
) -> IngestReport:
    """Bring the knowledge base in line with ``paths`` (files or folders, each its own source)."""
    started = time.perf_counter()
    report = IngestReport()
    known = await builder.known()
    # File system walks, reads and parsing (PDF, HTML) run in threads: the bot's loop keeps serving.
    listings = [await asyncio.to_thread(list_documents, root) for root in paths]
    if progress:
        progress.start(sum(len(listing.files) for listing in listings))
    for listing in listings:
        report.ignored.extend(listing.ignored)
        from_here = await builder.known(listing.source)
        batch: list[SourceDocument] = []
        storing: asyncio.Task[None] | None = None
        for file in listing.files:
            if progress:
                progress.advance(file.doc_id)
            try:
                raw = await asyncio.to_thread(read_bytes, file, max_bytes)
                if known.get(file.doc_id) == content_hash(raw):
                    report.unchanged += 1
                    continue
                batch.append(await asyncio.to_thread(parse_document, file, raw))
            except DocumentError as exc:
                report.failed.append((file.doc_id, exc.reason))
            except OSError as exc:
                report.failed.append((file.doc_id, f"unreadable ({exc.strerror or exc})"))
            if len(batch) >= EMBED_BATCH:
                # The next documents are read and parsed while these are embedded and stored.
                if storing:
                    await storing
                storing = asyncio.create_task(_add(batch, builder, known, report))
                batch = []
        if storing:
            await storing
        await _add(batch, builder, known, report)
        gone = sorted(set(from_here) - {f.doc_id for f in listing.files})
        await builder.remove(gone)
        report.removed.extend(gone)
    report.graph = await builder.refresh_graph()
    report.seconds = time.perf_counter() - started
    return report


async def _add(
    docs: list[SourceDocument], builder: KnowledgeBuilder, known: dict[str, str], report: IngestReport
) -> None:
    """Store parsed documents (their chunks embedded together) and report each."""
    if not docs:
        return
    for doc, chunks in zip(docs, await builder.add(docs), strict=True):
        if not chunks:
            report.failed.append((doc.doc_id, "no text"))
            continue
        report.chunks += chunks
        if reason := no_procedure(doc):  # cached: the extractor asked it first
            report.no_procedure.append((doc.doc_id, reason))
        (report.changed if doc.doc_id in known else report.added).append(doc.doc_id)
