"""The Elasticsearch chunk index: BM25 and kNN over one chunks index, ingest state in a ``-docs`` index.

Owns the index mappings, the query bodies (pure functions, unit-tested without a server) and the
mapping of client errors onto ``RetrievalUnavailable``. Needs the ``[es]`` extra, imported lazily;
the client major must match the server major (9.x here).

Where it differs from the ``ChunkIndex`` contract: Elasticsearch has no multi-document transactions,
so while a document is being replaced a search may see a mix of its old and new chunks. The docs-index
entry is written last and removed first, so ``document_hashes`` only reports fully written documents.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Collection, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import ConfigError, RetrievalUnavailable
from core.settings import RetrievalSettings
from core.types import Chunk, IncidentNode, SourceDocument
from retrieval.lexical import STOP_WORDS, query_terms, runbook_about, runbook_names
from retrieval.ports import Hits

if TYPE_CHECKING:
    from elasticsearch import AsyncElasticsearch

HEADING_BOOST = 3
NAME_BOOST = 2
FORMAT = 4  # the analysis below; 1 expanded identifiers client-side, 2 kept letters and digits together, 3 no NotX
MAX_WINDOW = 10_000  # index.max_result_window and the kNN num_candidates ceiling
_BATCH = 1_000
_KEYWORD = {"type": "keyword"}
_CHUNK_FIELDS = ["chunk_id", "doc_id", "ordinal", "title", "heading_path", "text"]

# The server's analysers do what the embedded index does in Python (retrieval.lexical.index_terms):
# split on anything but letters and digits (so pg_stat_replication and 10.0.0.10 split the way the
# embedded tokenizer splits them), keep each identifier and add its case-change and letter-digit parts
# (KubeAPIDown → KubeAPIDown Kube API Down, High403Rate → High403Rate High 403 Rate), lower-case, drop
# stop words, Snowball English stems. (The server also splits plain words this way, ens5 → ens5 ens 5:
# extra terms beside the original, which still matches as the embedded index's does.) A negated state
# inside an identifier is also a term of its own (KubeNodeNotReady → … NotReady), as 'not' is a stop word.
# Indexing flattens the word-delimiter graph, as Elasticsearch requires of index-time graphs.
_QUERY = ["opsflow_not", "opsflow_parts", "lowercase", "opsflow_stop", "opsflow_stem"]
_INDEX = [*_QUERY[:2], "flatten_graph", *_QUERY[2:]]
ANALYSIS = {
    "analyzer": {
        "opsflow_text": {"type": "custom", "tokenizer": "opsflow_words", "filter": _INDEX},
        "opsflow_query": {"type": "custom", "tokenizer": "opsflow_words", "filter": _QUERY},
    },
    "tokenizer": {"opsflow_words": {"type": "pattern", "pattern": "[^\\p{L}\\p{N}]+"}},
    "filter": {
        "opsflow_parts": {
            "type": "word_delimiter_graph", "split_on_case_change": True, "preserve_original": True,
            "split_on_numerics": True, "stem_english_possessive": False,
        },
        # retrieval.lexical's 'Not' joined to the part after it: NotReady, NotRHCOS (before an Image).
        "opsflow_not": {
            "type": "pattern_capture", "preserve_original": True,
            "patterns": ["(Not\\p{Lu}(?:\\p{Ll}+|\\p{Lu}*(?!\\p{Ll})))"],
        },
        "opsflow_stop": {"type": "stop", "stopwords": sorted(STOP_WORDS)},
        "opsflow_stem": {"type": "snowball", "language": "English"},
    },
}  # fmt: skip
_TEXT = {"type": "text", "analyzer": "opsflow_text", "search_analyzer": "opsflow_query"}


def docs_index_name(es_index: str) -> str:
    return f"{es_index}-docs"


def chunk_index_body(dim: int) -> dict[str, Any]:
    """``indices.create`` arguments for the chunks index."""
    # Plain float HNSW: the quantized defaults (int8_hnsw, bbq_hnsw) would only approximate the cosine,
    # and callers compare it with the embedded backend's exact one.
    vec = {
        "type": "dense_vector",
        "dims": dim,
        "index": True,
        "similarity": "cosine",
        "index_options": {"type": "hnsw"},
    }
    properties = {
        **dict.fromkeys(("chunk_id", "doc_id", "heading_path", "write_id"), _KEYWORD),
        "ordinal": {"type": "integer"},
        "title": {"type": "text"},
        "heading": _TEXT,
        "body": _TEXT,
        "text": {"type": "text", "index": False},
        "vec": vec,
    }
    return _index_body(properties)


def docs_index_body() -> dict[str, Any]:
    """``indices.create`` arguments for the per-document ingest state and the runbook names ranking."""
    properties = {
        **dict.fromkeys(("doc_id", "source", "kind", "content_hash", "write_id"), _KEYWORD),
        "title": {"type": "text"},
        "names": _TEXT,
        "about": _TEXT,
        "chunk_count": {"type": "integer"},
        "incidents": {"type": "object", "enabled": False},
    }
    return _index_body(properties)


def _index_body(properties: dict[str, Any]) -> dict[str, Any]:
    mappings = {"dynamic": "strict", "_meta": {"opsflow_format": FORMAT}, "properties": properties}
    return {"settings": {"analysis": ANALYSIS}, "mappings": mappings}


def mapped_dims(get_mapping_body: Mapping[str, Any]) -> int | None:
    """The ``vec`` dims of an existing chunks index, from an ``indices.get_mapping`` response."""
    for index in get_mapping_body.values():
        dims = index["mappings"].get("properties", {}).get("vec", {}).get("dims")
        return None if dims is None else int(dims)
    return None


def check_format(name: str, get_mapping_body: Mapping[str, Any]) -> None:
    """Raise ``ConfigError`` unless an existing index was created with this ``FORMAT`` (1 when unrecorded)."""
    for index in get_mapping_body.values():
        found = int(index["mappings"].get("_meta", {}).get("opsflow_format", 1))
        if found != FORMAT:
            raise ConfigError(
                f"Elasticsearch index {name!r} has opsflow format {found}, this opsflow needs {FORMAT}: delete it "
                "(or set retrieval.es_index to a new name) and run `opsflow ingest` again"
            )


def _match(query: str, fields: list[str], k: int) -> dict[str, Any]:
    # multi_match analyses its text and parses no query syntax, so the text needs no escaping.
    match = {"query": query, "fields": fields, "type": "most_fields"}
    return {"query": {"multi_match": match}, "size": min(k, MAX_WINDOW), "source": False}


def lexical_query(query: str, k: int) -> dict[str, Any]:
    """``search`` arguments for BM25 over heading (boosted) and body, analysed by the server."""
    return _match(query, [f"heading^{HEADING_BOOST}", "body"], k)


def runbook_query(query: str, k: int) -> dict[str, Any]:
    """``search`` arguments (docs index) for BM25 over runbook names (boosted) and descriptions."""
    return _match(query, [f"names^{NAME_BOOST}", "about"], k)


def knn_query(vector: np.ndarray, k: int, within: Collection[str] | None = None) -> dict[str, Any]:
    """``search`` arguments for approximate kNN on ``vec`` (among the chunks of the documents ``within``)."""
    k = min(k, MAX_WINDOW)
    query_vector = np.asarray(vector, dtype=np.float32).tolist()
    knn: dict[str, Any] = {
        "field": "vec", "query_vector": query_vector, "k": k, "num_candidates": min(max(100, 2 * k), MAX_WINDOW)
    }  # fmt: skip
    if within is not None:
        knn["filter"] = {"terms": {"doc_id": sorted(within)}}
    return {"knn": knn, "size": k, "source": False}


def cosine_from_score(score: float) -> float:
    """Elasticsearch scores cosine similarity as ``(1 + cos) / 2``; undo that."""
    return 2.0 * score - 1.0


def hits(response: Mapping[str, Any], *, cosine: bool = False) -> Hits:
    return [
        (h["_id"], cosine_from_score(h["_score"]) if cosine else float(h["_score"])) for h in response["hits"]["hits"]
    ]


def chunk_actions(
    index: str, doc: SourceDocument, chunks: Sequence[Chunk], vectors: np.ndarray, write_id: str
) -> list[dict[str, Any]]:
    """Bulk ``index`` actions, one per chunk, keyed by chunk id and tagged with this write's id."""
    return [
        {
            "_op_type": "index",
            "_index": index,
            "_id": chunk.chunk_id,
            # Under "_source" so the bulk helper cannot mistake a field for action metadata.
            "_source": {
                "chunk_id": chunk.chunk_id,
                "doc_id": doc.doc_id,
                "ordinal": chunk.ordinal,
                "title": chunk.title,
                "heading_path": list(chunk.heading_path),
                "heading": chunk.context,
                "body": chunk.text,
                "text": chunk.text,
                "write_id": write_id,
                "vec": vec.tolist(),
            },
        }
        for chunk, vec in zip(chunks, np.asarray(vectors, dtype=np.float32), strict=True)
    ]


def docs_entry(
    doc: SourceDocument, incidents: Sequence[IncidentNode], write_id: str, chunk_count: int
) -> dict[str, Any]:
    return {
        "doc_id": doc.doc_id,
        "source": doc.source,
        "title": doc.title,
        "names": "\n".join(runbook_names(doc.doc_id, doc.title, incidents)),
        "about": runbook_about(incidents),
        "kind": doc.kind,
        "content_hash": doc.content_hash,
        "write_id": write_id,
        "chunk_count": chunk_count,
        "incidents": [n.model_dump(mode="json", exclude={"node_id"}) for n in incidents],
    }


def stale_chunks_query(doc_id: str, write_id: str) -> dict[str, Any]:
    """This document's chunks left over from earlier writes."""
    return {"bool": {"filter": [{"term": {"doc_id": doc_id}}], "must_not": [{"term": {"write_id": write_id}}]}}


def docs_query(doc_ids: Sequence[str]) -> dict[str, Any]:
    return {"terms": {"doc_id": list(doc_ids)}}


def source_query(source: str | None) -> dict[str, Any]:
    return {"match_all": {}} if source is None else {"term": {"source": source}}


def chunk_from_source(src: Mapping[str, Any]) -> Chunk:
    return Chunk(
        chunk_id=src["chunk_id"], doc_id=src["doc_id"], ordinal=src["ordinal"], title=src["title"],
        heading_path=tuple(src["heading_path"]), text=src["text"],
    )  # fmt: skip


@contextlib.contextmanager  # a sync CM is fine around awaits
def map_elasticsearch_errors(action: str) -> Iterator[None]:
    """Turn "the cluster is down, slow, overloaded or refusing us" into ``RetrievalUnavailable``."""
    from elasticsearch import ApiError, TransportError, UnsupportedProductError

    try:
        yield
    except TransportError as exc:  # connection refused or reset, timeout, TLS
        raise RetrievalUnavailable(f"Elasticsearch unreachable ({action}): {exc}", backend="elasticsearch") from exc
    except ApiError as exc:
        if isinstance(exc, UnsupportedProductError) or exc.meta.status >= 500 or exc.meta.status in (401, 403, 429):
            raise RetrievalUnavailable(f"Elasticsearch refused {action}: {exc}", backend="elasticsearch") from exc
        raise


class ElasticsearchChunkIndex:
    """Chunks (BM25 text and float vectors) in ``es_index``, ingest state in ``<es_index>-docs``."""

    def __init__(self, settings: RetrievalSettings, *, dim: int) -> None:
        from elasticsearch import AsyncElasticsearch

        if settings.es_url is None:
            raise ConfigError("the Elasticsearch chunk index needs retrieval.es_url")
        key = settings.es_api_key.get_secret_value() if settings.es_api_key else None
        self._es: AsyncElasticsearch = AsyncElasticsearch(
            str(settings.es_url), api_key=key, request_timeout=settings.timeout_s, max_retries=1, retry_on_timeout=False
        )
        # timeout_s is a search deadline; bulk writes, forced refreshes and delete-by-query need longer.
        self._writer = self._es.options(request_timeout=max(30.0, 6 * settings.timeout_s))
        self._timeout = settings.timeout_s
        self._chunks, self._docs = settings.es_index, docs_index_name(settings.es_index)
        self._dim = dim
        self._lock = asyncio.Lock()
        self._started = False

    async def start(self) -> None:
        """Create both indices if missing (safe to repeat); check the vector size and format of existing ones."""
        async with self._lock:
            if self._started:
                return
            with map_elasticsearch_errors("index setup"):
                if not await self._create(self._chunks, chunk_index_body(self._dim)):
                    mapping = (await self._es.indices.get_mapping(index=self._chunks)).body
                    if (dims := mapped_dims(mapping)) != self._dim:
                        raise ConfigError(
                            f"Elasticsearch index {self._chunks!r} holds {dims}-d vectors but the embedder makes "
                            f"{self._dim}-d ones: delete the index or set retrieval.es_index to a new name"
                        )
                    check_format(self._chunks, mapping)
                if not await self._create(self._docs, docs_index_body()):
                    check_format(self._docs, (await self._es.indices.get_mapping(index=self._docs)).body)
            self._started = True

    async def _create(self, name: str, body: dict[str, Any]) -> bool:
        from elasticsearch import BadRequestError

        try:
            await self._writer.indices.create(index=name, **body)
        except BadRequestError as exc:
            if exc.error != "resource_already_exists_exception":
                raise
            return False
        return True

    async def document_hashes(self, source: str | None = None) -> dict[str, str]:
        return {
            h["_id"]: h["_source"]["content_hash"] async for h in self._scan(source_query(source), ["content_hash"])
        }

    async def replace_document(
        self, doc: SourceDocument, chunks: Sequence[Chunk], vectors: np.ndarray, incidents: Sequence[IncidentNode]
    ) -> None:
        from elasticsearch.helpers import async_bulk

        if len(vectors) != len(chunks) or (chunks and np.shape(vectors)[1:] != (self._dim,)):
            raise ValueError(f"{len(chunks)} chunks of dim {self._dim} but vectors of shape {np.shape(vectors)}")
        await self.start()
        write_id = uuid.uuid4().hex  # unique per write, so a re-ingest with the same hash still drops stale chunks
        with map_elasticsearch_errors(f"writing {doc.doc_id}"):
            # Refreshed first so delete-by-query sees the new chunks' write_id rather than the old one.
            await async_bulk(self._writer, chunk_actions(self._chunks, doc, chunks, vectors, write_id), refresh=True)
            await self._writer.delete_by_query(
                index=self._chunks, query=stale_chunks_query(doc.doc_id, write_id), conflicts="proceed", refresh=True
            )
            entry = docs_entry(doc, incidents, write_id, len(chunks))
            await self._writer.index(index=self._docs, id=doc.doc_id, document=entry, refresh=True)  # commit marker

    async def remove_documents(self, doc_ids: Collection[str]) -> None:
        ids = list(doc_ids)
        if not ids:
            return
        await self.start()
        with map_elasticsearch_errors("removing documents"):
            for at in range(0, len(ids), _BATCH):
                for index in (self._docs, self._chunks):  # the commit marker goes first
                    await self._writer.delete_by_query(
                        index=index, query=docs_query(ids[at : at + _BATCH]), conflicts="proceed", refresh=True
                    )

    async def spelling(self, query: str) -> str:
        """``query`` unchanged: this backend keeps no unstemmed vocabulary to correct against."""
        return query

    async def lexical(self, query: str, k: int) -> Hits:
        if not query_terms(query) or k <= 0:
            return []
        await self.start()
        with map_elasticsearch_errors("lexical search"):
            return hits((await self._es.search(index=self._chunks, **lexical_query(query, k))).body)

    async def runbooks(self, query: str, k: int) -> Hits:
        if not query_terms(query) or k <= 0:
            return []
        await self.start()
        with map_elasticsearch_errors("runbook search"):
            return hits((await self._es.search(index=self._docs, **runbook_query(query, k))).body)

    async def dense(self, vector: np.ndarray, k: int, within: Collection[str] | None = None) -> Hits:
        if k <= 0 or (within is not None and not within):
            return []
        await self.start()
        with map_elasticsearch_errors("dense search"):
            response = await self._es.search(index=self._chunks, **knn_query(vector, k, within))
            return hits(response.body, cosine=True)

    async def chunks(self, chunk_ids: Collection[str]) -> dict[str, Chunk]:
        ids = list(dict.fromkeys(chunk_ids))
        found: dict[str, Chunk] = {}
        if not ids:
            return found
        await self.start()
        with map_elasticsearch_errors("reading chunks"):
            for at in range(0, len(ids), _BATCH):
                resp = await self._es.mget(index=self._chunks, ids=ids[at : at + _BATCH], source_includes=_CHUNK_FIELDS)
                found.update((d["_id"], chunk_from_source(d["_source"])) for d in resp["docs"] if d.get("found"))
        return found

    async def incident_candidates(self) -> list[IncidentNode]:
        by_doc = [(h["_id"], h["_source"].get("incidents", [])) async for h in self._scan(None, ["incidents"])]
        return [IncidentNode.model_validate(n) for _, nodes in sorted(by_doc, key=lambda d: d[0]) for n in nodes]

    async def counts(self) -> dict[str, int]:
        await self.start()
        with map_elasticsearch_errors("counting"):
            docs = (await self._es.count(index=self._docs))["count"]
            chunks = (await self._es.count(index=self._chunks))["count"]
        return {"documents": docs, "chunks": chunks}

    async def _scan(self, query: dict[str, Any] | None, fields: list[str]) -> AsyncIterator[dict[str, Any]]:
        """Every hit of the docs index, past the 10,000-hit window (scroll)."""
        from elasticsearch.helpers import async_scan

        await self.start()
        with map_elasticsearch_errors("scanning documents"):
            # async_scan's request_timeout defaults to None, which means no deadline at all.
            async for hit in async_scan(
                self._es, index=self._docs, query={"query": query or {"match_all": {}}, "_source": fields},
                request_timeout=self._timeout, scroll="1m", size=_BATCH,
            ):  # fmt: skip
                yield hit

    async def aclose(self) -> None:
        await self._es.close()
