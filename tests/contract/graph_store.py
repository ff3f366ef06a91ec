"""The behaviour every GraphStore adapter must show; subclass with a ``graph`` fixture."""

from __future__ import annotations

import pytest

from core.types import IncidentNode, Relation
from retrieval.ports import GraphStore

NODES = [
    IncidentNode(
        name="KubeAPIDown",
        description="All API servers unreachable.",
        mitigation=("Check the API server pods", "Check kube-proxy logs"),
        aliases=("KubeAPIDown",),
        components=("apiserver", "kubernetes"),
        chunk_ids=("k8s/KubeAPIDown.md#0", "k8s/KubeAPIDown.md#2"),
        doc_ids=("k8s/KubeAPIDown.md",),
    ),
    IncidentNode(
        name="etcdMembersDown",
        description="One or more etcd members are down.",
        aliases=("etcd_members_down",),
        components=("etcd",),
        chunk_ids=("etcd/etcdMembersDown.md#1",),
        doc_ids=("etcd/etcdMembersDown.md",),
    ),
    IncidentNode(name="Disk full on database host", components=("database",), chunk_ids=("db/disk.md#0",)),
]
RELATIONS = [Relation(src="etcd-members-down", dst="kube-api-down", reason="mentions KubeAPIDown")]


class GraphStoreContract:
    @pytest.fixture
    async def graph(self) -> GraphStore:
        raise NotImplementedError

    async def test_empty_graph_was_built_from_nothing(self, graph: GraphStore) -> None:
        assert await graph.built_from() is None
        assert await graph.named(["kube api down"]) == []

    async def test_replace_all_round_trips_nodes(self, graph: GraphStore) -> None:
        await graph.replace_all(NODES, RELATIONS, "fp-1")
        assert await graph.built_from() == "fp-1"
        assert await graph.named(["kube api down"]) == [NODES[0]]
        assert await graph.counts() == {"nodes": 3, "relations": 1, "components": 4}

    async def test_named_matches_aliases_and_ignores_unknown_keys(self, graph: GraphStore) -> None:
        await graph.replace_all(NODES, RELATIONS, "fp-1")
        found = await graph.named(["etcd members down", "no such incident", "disk full on database host"])
        assert sorted(n.name for n in found) == ["Disk full on database host", "etcdMembersDown"]

    async def test_for_chunks_finds_nodes_by_any_source_chunk(self, graph: GraphStore) -> None:
        await graph.replace_all(NODES, RELATIONS, "fp-1")
        assert [n.name for n in await graph.for_chunks(["k8s/KubeAPIDown.md#2", "other#0"])] == ["KubeAPIDown"]
        assert await graph.for_chunks([]) == []

    async def test_neighbours_follow_relations_both_ways(self, graph: GraphStore) -> None:
        await graph.replace_all(NODES, RELATIONS, "fp-1")
        assert [n.name for n in await graph.neighbours(["kube-api-down"])] == ["etcdMembersDown"]
        assert [n.name for n in await graph.neighbours(["etcd-members-down"])] == ["KubeAPIDown"]
        assert await graph.neighbours(["db"]) == []

    async def test_replace_all_replaces_everything(self, graph: GraphStore) -> None:
        await graph.replace_all(NODES, RELATIONS, "fp-1")
        await graph.replace_all(NODES[2:], [], "fp-2")
        assert await graph.built_from() == "fp-2"
        assert await graph.named(["kube api down"]) == []
        assert await graph.counts() == {"nodes": 1, "relations": 0, "components": 1}
