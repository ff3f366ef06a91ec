"""The knowledge-base builder's storage side: documents in, chunks + vectors + incident graph out.

Each document is written in one step (chunks, vectors and its incident candidates together), so
an interrupted ingest leaves whole documents only; the graph is then rebuilt from all candidates
whenever they changed (FlowXpert steps 1–4: chunk, extract, fill, merge and refine).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass

from core.errors import DocumentError
from core.types import Chunk, SourceDocument
from retrieval.chunking import chunk_document
from retrieval.incidents import group_candidates, merge_similar, names_an_alert, refine, relate
from retrieval.ports import ChunkIndex, Embedder, GraphStore, IncidentExtractor


@dataclass(frozen=True)
class GraphReport:
    candidates: int
    nodes: int
    relations: int


def embedding_text(chunk: Chunk) -> str:
    """What the dense side embeds: where the chunk sits, then what it says."""
    return f"{chunk.context}\n{chunk.text}"


class KnowledgeBuilder:
    """Adds, replaces and removes documents, and keeps the incident graph in step with them."""

    def __init__(
        self,
        index: ChunkIndex,
        graph: GraphStore,
        embedder: Embedder,
        extractor: IncidentExtractor,
        *,
        window_words: int = 160,
        overlap_words: int = 40,
    ) -> None:
        self._index = index
        self._graph = graph
        self._embedder = embedder
        self._extractor = extractor
        self._window = window_words
        self._overlap = overlap_words

    async def known(self, source: str | None = None) -> dict[str, str]:
        """doc_id → content hash of what was ingested (from ``source``, if given)."""
        return await self._index.document_hashes(source)

    async def add(self, doc: SourceDocument) -> int:
        """Chunk, embed and extract ``doc`` and replace its stored version; returns its chunk count."""
        chunks = chunk_document(doc, window_words=self._window, overlap_words=self._overlap)
        if not chunks:
            raise DocumentError("no text")
        vectors = await self._embedder.embed([embedding_text(c) for c in chunks])
        incidents = [node for chunk in chunks for node in await self._extractor.extract(doc, chunk)]
        await self._index.replace_document(doc, chunks, vectors, incidents)
        return len(chunks)

    async def remove(self, doc_ids: Collection[str]) -> None:
        await self._index.remove_documents(doc_ids)

    async def refresh_graph(self) -> GraphReport | None:
        """Rebuild the graph if the stored candidates changed since it was built; None if it was current."""
        candidates = await self._index.incident_candidates()
        fingerprint = hashlib.sha256(
            json.dumps([c.model_dump(mode="json") for c in candidates], sort_keys=True).encode()
        ).hexdigest()
        if fingerprint == await self._graph.built_from():
            return None
        groups = group_candidates(candidates)
        alerts = [g for g in groups if names_an_alert(g)]
        described = [g for g in groups if not names_an_alert(g)]
        if described:
            described = merge_similar(described, await self._embedder.embed([g[0].name for g in described]))
        nodes = [refine(g) for g in alerts + described]
        relations = relate(nodes)
        await self._graph.replace_all(nodes, relations, fingerprint)
        return GraphReport(candidates=len(candidates), nodes=len(nodes), relations=len(relations))
