"""The Elasticsearch chunk index against the shared contract, plus its unreachable-server behaviour.

To run the contract suite, point it at a real ES 9.x server (the client major must match):
``OPSFLOW_TEST_ES_URL=http://localhost:9200 pytest tests/contract/test_elasticsearch.py``, with
``OPSFLOW_TEST_ES_API_KEY`` for a secured cluster. Each test works in its own pair of indices, deleted after.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import numpy as np
import pytest

from core.errors import RetrievalUnavailable
from core.settings import RetrievalSettings
from retrieval.elasticsearch import ElasticsearchChunkIndex, docs_index_name
from tests.contract.chunk_index import DIM, ChunkIndexContract, make_doc, unit


@pytest.mark.integration
class TestElasticsearchChunkIndex(ChunkIndexContract):
    @pytest.fixture
    async def index(self) -> AsyncIterator[ElasticsearchChunkIndex]:
        url = os.environ.get("OPSFLOW_TEST_ES_URL")
        if not url:
            pytest.skip(
                "set OPSFLOW_TEST_ES_URL to run the Elasticsearch contract suite against a real server (ES 9.x)"
            )
        from elasticsearch import AsyncElasticsearch

        api_key = os.environ.get("OPSFLOW_TEST_ES_API_KEY")
        name = f"opsflow-test-{uuid.uuid4().hex[:12]}"
        settings = RetrievalSettings(backend="elasticsearch", es_url=url, es_api_key=api_key, es_index=name)
        index = ElasticsearchChunkIndex(settings, dim=DIM)
        try:
            await index.start()
            yield index
        finally:
            await index.aclose()
            async with AsyncElasticsearch(url, api_key=api_key, request_timeout=30) as es:
                await es.indices.delete(index=[name, docs_index_name(name)], ignore_unavailable=True)


@pytest.fixture
async def unreachable() -> AsyncIterator[ElasticsearchChunkIndex]:
    # Port 9 (discard) on loopback: nothing listens there, so the connection is refused at once.
    settings = RetrievalSettings(backend="elasticsearch", es_url="http://127.0.0.1:9", timeout_s=0.5)
    index = ElasticsearchChunkIndex(settings, dim=DIM)
    yield index
    await index.aclose()


async def test_closed_port_raises_retrieval_unavailable(unreachable: ElasticsearchChunkIndex) -> None:
    with pytest.raises(RetrievalUnavailable) as caught:
        await unreachable.lexical("disk full", 5)
    assert caught.value.backend == "elasticsearch"
    assert caught.value.__cause__ is not None


async def test_every_call_raises_retrieval_unavailable(unreachable: ElasticsearchChunkIndex) -> None:
    doc, chunks, incidents = make_doc("a.md", ["disk full"])
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: unreachable.dense(unit(1), 5),
        unreachable.counts,
        unreachable.document_hashes,
        unreachable.incident_candidates,
        lambda: unreachable.chunks(["a.md#0"]),
        lambda: unreachable.remove_documents(["a.md"]),
        lambda: unreachable.replace_document(doc, chunks, np.stack([unit(1)]), incidents),
    ]
    for call in calls:
        with pytest.raises(RetrievalUnavailable):
            await call()
