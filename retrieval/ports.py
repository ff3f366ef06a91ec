"""The ports retrieval consumes: the chunk index, the incident graph, the embedder, the extractor.

Adapters satisfy these structurally (no import needed); ``bot/app.py`` picks them.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

import numpy as np

from core.types import Chunk, IncidentNode, Relation, SourceDocument

Hits = list[tuple[str, float]]
"""(chunk_id or doc_id, backend score) pairs, best first."""


class Embedder(Protocol):
    """Text → L2-normalised float32 vectors."""

    dim: int

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return an array of shape ``(len(texts), dim)``; loads the model on first use."""
        ...

    async def aclose(self) -> None: ...


class ChunkIndex(Protocol):
    """Chunks with their BM25 text and dense vectors, plus the ingest state of each document.

    The index is the source of truth for what has been ingested: a document counts as ingested
    (its hash is reported) only once all of its chunks and incident candidates are written.
    """

    async def document_hashes(self, source: str | None = None) -> dict[str, str]:
        """doc_id → content hash, for every document (or those ingested from ``source``)."""
        ...

    async def replace_document(
        self,
        doc: SourceDocument,
        chunks: Sequence[Chunk],
        vectors: np.ndarray,
        incidents: Sequence[IncidentNode],
    ) -> None:
        """Replace everything stored for ``doc.doc_id``; readers never see a half-written document."""
        ...

    async def remove_documents(self, doc_ids: Collection[str]) -> None:
        """Remove the documents and their chunks; unknown ids are ignored."""
        ...

    async def spelling(self, query: str) -> str:
        """``query`` with words no chunk holds replaced by the closest indexed spelling (or unchanged)."""
        ...

    async def lexical(self, query: str, k: int) -> Hits:
        """BM25 search; at most ``k`` hits, best first; a query with no searchable word gives []."""
        ...

    async def runbooks(self, query: str, k: int) -> Hits:
        """BM25 over each document's names (title, file name, incident names and aliases, identifiers
        split) and descriptions; at most ``k`` (doc_id, score) pairs, best first."""
        ...

    async def dense(self, vector: np.ndarray, k: int, within: Collection[str] | None = None) -> Hits:
        """Cosine (dot-product on normalised vectors) search; at most ``k`` hits, best first; only
        among the chunks of the documents ``within`` when given."""
        ...

    async def chunks(self, chunk_ids: Collection[str]) -> dict[str, Chunk]:
        """The chunks that exist among ``chunk_ids``."""
        ...

    async def incident_candidates(self) -> list[IncidentNode]:
        """Every incident candidate stored with the documents, in document order."""
        ...

    async def counts(self) -> dict[str, int]:
        """``{"documents": n, "chunks": m}``."""
        ...

    async def aclose(self) -> None: ...


class GraphStore(Protocol):
    """Merged incident nodes with their relations, components and source chunks.

    The graph is derived from the index's incident candidates and rebuilt as a whole;
    ``built_from`` records the fingerprint of the candidates it was built from.
    """

    async def built_from(self) -> str | None:
        """The fingerprint passed to the last successful ``replace_all``, or None if empty."""
        ...

    async def replace_all(self, nodes: Sequence[IncidentNode], relations: Sequence[Relation], built_from: str) -> None:
        """Atomically replace the whole graph; node ids are unique, relation ends exist."""
        ...

    async def named(self, keys: Collection[str]) -> list[IncidentNode]:
        """Nodes whose normalised name or alias is one of ``keys``."""
        ...

    async def for_chunks(self, chunk_ids: Collection[str]) -> list[IncidentNode]:
        """Nodes built from any of ``chunk_ids``."""
        ...

    async def neighbours(self, node_ids: Collection[str]) -> list[IncidentNode]:
        """Nodes joined to any of ``node_ids`` by a relation, excluding ``node_ids`` themselves."""
        ...

    async def counts(self) -> dict[str, int]:
        """``{"nodes": n, "relations": m, "components": c}``."""
        ...

    async def aclose(self) -> None: ...


class IncidentExtractor(Protocol):
    """Finds the incidents a chunk describes (FlowXpert's knowledge-base builder, steps 2–3)."""

    async def extract(self, doc: SourceDocument, chunk: Chunk) -> list[IncidentNode]:
        """Candidate nodes for this chunk, each with ``chunk_ids == (chunk.chunk_id,)``; may be []."""
        ...
