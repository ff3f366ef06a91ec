"""The Neo4j adapter's pure parts (Cypher, parameter rows, error mapping) and its unreachable-server behaviour."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from core.errors import ConfigError, RetrievalUnavailable
from core.settings import GraphSettings
from core.types import IncidentNode, Relation
from retrieval import neo4j as adapter
from retrieval.neo4j import (
    CREATE_COMPONENTS,
    CREATE_INCIDENTS,
    CREATE_RELATIONS,
    DELETE_ALL,
    Neo4jGraphStore,
    batches,
    component_names,
    incident_rows,
    map_neo4j_errors,
    nodes_from_records,
    relation_rows,
)

NODE = IncidentNode(
    name="KubeAPIDown",
    description='The "API" is down.\nIt\'s bad.',
    mitigation=("Check pods", "Check kube-proxy logs"),
    aliases=("kube_api_down", "APIServerDown"),
    components=("kubernetes", "apiserver", "kubernetes"),
    chunk_ids=("k8s.md#2", "k8s.md#0", "k8s.md#2"),
    doc_ids=("k8s.md",),
)
OTHER = IncidentNode(name="etcdMembersDown", components=("etcd", "kubernetes"))


def _params(query: str) -> set[str]:
    return set(re.findall(r"\$(\w+)", query))


def test_incident_row_body_round_trips_the_node_exactly() -> None:
    (row,) = incident_rows([NODE])
    assert row["node_id"] == "kube-api-down"
    assert "node_id" not in row["body"]
    assert IncidentNode.model_validate_json(row["body"]) == NODE
    assert nodes_from_records([{"node_id": "kube-api-down", "body": row["body"]}]) == [NODE]


def test_incident_row_lookup_lists_are_sorted_and_unique() -> None:
    (row,) = incident_rows([NODE])
    assert row["keys"] == ["api server down", "kube api down"]
    assert row["chunk_ids"] == ["k8s.md#0", "k8s.md#2"]
    assert row["components"] == ["apiserver", "kubernetes"]


def test_each_component_is_created_once() -> None:
    assert component_names([NODE, OTHER]) == ["apiserver", "etcd", "kubernetes"]
    assert component_names([IncidentNode(name="x")]) == []


def test_relation_rows_carry_ends_and_reason() -> None:
    rows = relation_rows([Relation(src="a", dst="b", reason="mentions b")])
    assert rows == [{"src": "a", "dst": "b", "reason": "mentions b"}]


def test_batches_split_rows_and_yield_nothing_for_no_rows() -> None:
    assert list(batches([1, 2, 3, 4, 5], size=2)) == [[1, 2], [3, 4], [5]]
    assert list(batches([], size=2)) == []


def test_write_queries_read_only_fields_the_row_builders_make() -> None:
    assert set(re.findall(r"row\.(\w+)", CREATE_INCIDENTS)) <= set(incident_rows([NODE])[0])
    assert set(re.findall(r"row\.(\w+)", CREATE_RELATIONS)) <= set(relation_rows([Relation(src="a", dst="b")])[0])
    assert _params(CREATE_INCIDENTS) == _params(CREATE_RELATIONS) == {"rows"}
    assert _params(CREATE_COMPONENTS) == {"names"}


@pytest.mark.parametrize("name", ["NAMED", "FOR_CHUNKS", "NEIGHBOURS"])
def test_node_queries_return_bodies_ordered_by_node_id(name: str) -> None:
    query = getattr(adapter, name)
    assert "RETURN" in query and query.rstrip().endswith("ORDER BY node_id")
    assert len(_params(query)) == 1


def test_delete_all_touches_only_opsflow_labels() -> None:
    assert DELETE_ALL.startswith("MATCH (n) WHERE n:Incident OR n:Component OR n:Meta ")
    for query in (CREATE_COMPONENTS, CREATE_INCIDENTS, CREATE_RELATIONS, adapter.SET_BUILT_FROM):
        assert set(re.findall(r"\(\w*:(\w+)", query)) <= {"Incident", "Component", "Meta"}


# FalkorDB's Cypher subset (the CI server) lacks these; Neo4j has them.
@pytest.mark.parametrize("unsupported", [r"\(\w*:\w+\|", "COUNT {", "IF NOT EXISTS", "CONSTRAINT"])
def test_queries_stay_within_falkordbs_cypher(unsupported: str) -> None:
    queries = [v for k, v in vars(adapter).items() if k.isupper() and isinstance(v, str)]
    assert len(queries) >= 10
    assert not [q for q in queries if re.search(unsupported, q)]


def test_unavailable_errors_become_retrieval_unavailable() -> None:
    exceptions = pytest.importorskip("neo4j.exceptions")
    for exc in (
        exceptions.ServiceUnavailable("down"),
        exceptions.SessionExpired("gone"),
        exceptions.TransientError("leader switch"),
        exceptions.AuthError("bad password"),
        ConnectionResetError("reset"),
        TimeoutError(),
    ):
        with pytest.raises(RetrievalUnavailable) as caught, map_neo4j_errors("testing"):
            raise exc
        assert caught.value.backend == "neo4j"
        assert caught.value.__cause__ is exc


def test_query_errors_are_not_masked() -> None:
    exceptions = pytest.importorskip("neo4j.exceptions")
    with pytest.raises(exceptions.CypherSyntaxError), map_neo4j_errors("testing"):
        raise exceptions.CypherSyntaxError("bad query")


@pytest.mark.parametrize("uri", [None, "http://localhost:7474", "localhost:7687", "ftp://localhost"])
def test_bad_uri_is_a_config_error(uri: str | None) -> None:
    pytest.importorskip("neo4j")
    with pytest.raises(ConfigError, match="neo4j_uri"):
        Neo4jGraphStore(GraphSettings(neo4j_uri=uri))


@pytest.fixture
async def unreachable() -> AsyncIterator[Neo4jGraphStore]:
    pytest.importorskip("neo4j")
    # Port 9 (discard) on loopback: nothing listens there, so the connection is refused at once.
    graph = Neo4jGraphStore(GraphSettings(backend="neo4j", neo4j_uri="bolt://127.0.0.1:9", timeout_s=2))
    yield graph
    await graph.aclose()


async def test_closed_port_raises_retrieval_unavailable_quickly(unreachable: Neo4jGraphStore) -> None:
    start = time.perf_counter()
    with pytest.raises(RetrievalUnavailable) as caught:
        await unreachable.named(["kube api down"])
    assert time.perf_counter() - start < 1.5
    assert caught.value.backend == "neo4j"
    assert caught.value.__cause__ is not None


async def test_every_call_raises_retrieval_unavailable(unreachable: Neo4jGraphStore) -> None:
    calls: list[Callable[[], Awaitable[object]]] = [
        unreachable.built_from,
        unreachable.counts,
        lambda: unreachable.for_chunks(["a#0"]),
        lambda: unreachable.neighbours(["a"]),
        lambda: unreachable.replace_all([NODE], [], "fp"),
    ]
    for call in calls:
        with pytest.raises(RetrievalUnavailable):
            await call()


async def test_empty_lookups_do_not_touch_the_server(unreachable: Neo4jGraphStore) -> None:
    assert await unreachable.named([]) == []
    assert await unreachable.for_chunks([]) == []
    assert await unreachable.neighbours([]) == []


async def test_a_server_that_never_answers_hits_the_deadline() -> None:
    pytest.importorskip("neo4j")
    silent: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent.append(writer)  # hold the connection open and say nothing, not even the handshake

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    graph = Neo4jGraphStore(GraphSettings(backend="neo4j", neo4j_uri=f"bolt://127.0.0.1:{port}", timeout_s=0.3))
    try:
        start = time.perf_counter()
        with pytest.raises(RetrievalUnavailable):
            await graph.counts()
        assert time.perf_counter() - start < 2
    finally:
        await graph.aclose()
        for writer in silent:
            writer.close()
        server.close()
        await server.wait_closed()
