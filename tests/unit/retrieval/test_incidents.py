from __future__ import annotations

import numpy as np

from core.types import Chunk, IncidentNode, Section, SourceDocument
from retrieval.chunking import chunk_document
from retrieval.incidents import (
    StructuralExtractor,
    components_of,
    group_candidates,
    is_identifier,
    merge_similar,
    refine,
    relate,
)

RUNBOOK = SourceDocument(
    doc_id="openshift/cluster-etcd-operator/etcdMembersDown.md",
    source="/corpus",
    title="etcdMembersDown",
    kind="markdown",
    content_hash="h",
    sections=(
        Section(heading_path=("Meaning",), text="This alert fires when one or more etcd members are down."),
        Section(heading_path=("Impact",), text="The cluster may lose quorum. See KubeAPIDown."),
        Section(
            heading_path=("Diagnosis",),
            text="- Check the etcd pods are running.\n\n```shell\n$ oc get pods -n openshift-etcd\n```\n\n"
            "1. Inspect the member list with the etcdctl tool.",
        ),
        Section(heading_path=("Mitigation",), text="Restart the failed member. If the disk is full, free space first."),
    ),
)


def test_identifiers_and_components() -> None:
    assert is_identifier("KubeAPIDown") and is_identifier("etcd_members_down") and is_identifier("Watchdog")
    assert not is_identifier("Disk full on database host") and not is_identifier("")
    assert components_of("openshift/cluster-etcd-operator/etcdMembersDown.md", "etcdMembersDown") == ("etcd",)
    assert components_of("database/PgLag.md", "Postgres replication lag") == ("database", "postgres", "replication")


async def test_structural_extractor_gives_one_candidate_per_chunk_with_its_field() -> None:
    extractor = StructuralExtractor()
    chunks = chunk_document(RUNBOOK)
    candidates = [n for c in chunks for n in await extractor.extract(RUNBOOK, c)]
    assert [c.chunk_ids for c in candidates] == [(c.chunk_id,) for c in chunks]
    node = refine(candidates)
    assert node.name == "etcdMembersDown"
    assert node.node_id == "etcd-members-down"
    assert node.description.startswith("This alert fires when one or more etcd members are down.")
    assert node.description.endswith("The cluster may lose quorum.")
    assert node.mitigation == (
        "Check the etcd pods are running.",
        "Inspect the member list with the etcdctl tool.",
        "Restart the failed member.",
        "If the disk is full, free space first.",
    )
    assert node.components == ("etcd",)
    assert node.domain == "openshift"
    assert node.doc_ids == (RUNBOOK.doc_id,)


async def test_a_file_of_many_alerts_gives_one_node_per_alert() -> None:
    mixin = SourceDocument(
        doc_id="kubernetes/runbook.md", source="/r", title="Kubernetes Alert Runbooks", kind="markdown",
        content_hash="m",
        sections=(
            Section(heading_path=(), text="This page collects the alerts of this mixin."),
            Section(heading_path=("Group Name: kubernetes-apps", 'Alert Name: "KubeJobFailed"'),
                    text="- *Message*: `Job failed to complete.`\n\n"
                         "- *Action*: Check the job using `kubectl describe job <job>`."),
            Section(heading_path=("KubeletDown", "Diagnosis"), text="1. Check the kubelet service on the node."),
        ),
    )  # fmt: skip
    extractor = StructuralExtractor()
    nodes = [n for c in chunk_document(mixin) for n in await extractor.extract(mixin, c)]
    assert [(n.name, n.mitigation) for n in nodes] == [
        ("KubeJobFailed", ("Check the job using `kubectl describe job <job>`.",)),
        ("KubeletDown", ("Check the kubelet service on the node.",)),
    ]


async def test_prose_documents_yield_no_structural_candidates() -> None:
    prose = RUNBOOK.model_copy(update={"sections": (Section(heading_path=("Background",), text="Some prose here."),)})
    chunk = chunk_document(prose)[0]
    assert await StructuralExtractor().extract(prose, chunk) == []


def node(name: str, *, aliases: tuple[str, ...] = (), doc: str = "a.md", steps: tuple[str, ...] = ()) -> IncidentNode:
    return IncidentNode(name=name, aliases=aliases, mitigation=steps, chunk_ids=(f"{doc}#0",), doc_ids=(doc,))


def test_candidates_sharing_a_name_or_alias_are_grouped() -> None:
    groups = group_candidates(
        [node("KubeAPIDown"), node("Kube API Down", doc="b.md"), node("X", aliases=("kube_api_down",)), node("Other")]
    )
    assert [[c.name for c in g] for g in groups] == [["KubeAPIDown", "Kube API Down", "X"], ["Other"]]


def test_refine_prefers_the_alert_name_and_dedupes_steps_in_order() -> None:
    merged = refine(
        [
            node("Kube API Down", steps=("Check the API server pods", "Check kube-proxy logs")),
            node("KubeAPIDown", doc="b.md", steps=("check the api server pods", "Follow disaster recovery")),
        ]
    )
    assert merged.name == "KubeAPIDown"
    assert merged.aliases == ("Kube API Down",)
    assert merged.mitigation == ("Check the API server pods", "Check kube-proxy logs", "Follow disaster recovery")
    assert merged.doc_ids == ("a.md", "b.md")


def test_similar_descriptive_names_merge_and_distant_ones_do_not() -> None:
    groups = [[node("disk full on db host")], [node("database host disk is full")], [node("certificate expired")]]
    vectors = np.array([[1.0, 0.0], [0.96, 0.28], [0.0, 1.0]], dtype=np.float32)
    merged = merge_similar(groups, vectors, threshold=0.93)
    assert [[c.name for c in g] for g in merged] == [
        ["disk full on db host", "database host disk is full"],
        ["certificate expired"],
    ]


def test_relations_from_mentions_and_shared_documents() -> None:
    nodes = [
        node("etcdMembersDown", doc="etcd.md", steps=("If KubeAPIDown fires too, fix etcd first",)),
        node("KubeAPIDown", doc="api.md"),
        node("NodeDown", doc="etcd.md"),
    ]
    relations = relate(nodes)
    assert [(r.src, r.dst, r.reason) for r in relations] == [
        ("etcd-members-down", "kube-api-down", "mentions KubeAPIDown"),
        ("etcd-members-down", "node-down", "both in etcd.md"),
    ]


def test_chunk_context_names_the_document_and_section() -> None:
    chunk = Chunk(chunk_id="x#0", doc_id="x", ordinal=0, title="T", heading_path=("A", "B"), text="t")
    assert chunk.context == "T > A > B"
