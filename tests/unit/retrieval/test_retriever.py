"""Retrieval over the sample runbooks with the real embedded stores and model."""

from __future__ import annotations

import asyncio
import importlib

import pytest

from bot.app import open_knowledge
from core.errors import RetrievalUnavailable
from core.settings import GraphSettings, Settings
from core.types import IncidentNode
from retrieval.neo4j import Neo4jGraphStore
from retrieval.retriever import (
    Retriever,
    alerts_named,
    corroborated_lead,
    name_keys,
    named_first,
    sibling_key,
    tell_siblings_apart,
    without_instances,
)


def test_name_keys_are_query_ngrams_long_enough_to_name_something() -> None:
    keys = name_keys("Why is KubeAPIDown firing?")
    assert "kube api down" in keys
    assert "why" not in keys


@pytest.mark.parametrize(
    ("query", "searched"),
    [
        ("node ip-10-1-2-3.ec2.internal has been NotReady", "node internal has been NotReady"),
        ("KubePodCrashLooping pod=api-7f9c4b-xk2 container=api", "KubePodCrashLooping pod api container=api"),
        ("NodeFilesFillingUp instance=10.0.1.5:9100 mountpoint=/var", "NodeFilesFillingUp instance mountpoint=/var"),
        ("CephOSDDown osd.3 down after the upgrade to 4.18", "CephOSDDown osd down after the upgrade to 4.18"),
        ("5xx errors on k8s, HTTP 503 from shop.example.com", "5xx errors on k8s, HTTP 503 from shop.example.com"),
        ("10.0.1.5:9100", "10.0.1.5:9100"),
    ],
)  # fmt: skip
def test_instance_identifiers_are_searched_as_their_words(query: str, searched: str) -> None:
    assert without_instances(query) == searched


def test_an_alert_is_named_by_its_whole_name_in_any_case_or_spacing() -> None:
    api = IncidentNode(name="KubeAPIDown", doc_ids=("k8s/KubeAPIDown.md",))
    rule = IncidentNode(name="PrometheusRule", doc_ids=("prom/Rejected.md",))
    helper = IncidentNode(name="diagnosis", doc_ids=("odf/helpers/diagnosis.md",))
    nodes = [api, rule, helper]
    for query in ("How do I triage KubeAPIDown?", "kube api down since 10:00", "KUBE-API-DOWN", "KubeAPI down"):
        assert alerts_named(nodes, query) == [api]
    assert alerts_named(nodes, "PrometheusRuleFailures rule_group=k8s") == []  # a longer alert's name
    assert alerts_named(nodes, "diagnosis of a slow node") == []  # one word: as likely the question's own
    assert alerts_named(nodes, "the prometheus rule was rejected") == []  # two words: the question's own
    assert alerts_named(nodes, "PrometheusRule rejected") == [rule]


def test_the_runbooks_of_named_alerts_lead_in_their_order() -> None:
    docs = [("a.md", 3.0), ("b.md", 2.0), ("c.md", 1.0), ("d.md", 0.5)]
    assert named_first(docs, {"d.md", "c.md"}) == [("c.md", 4.0), ("d.md", 3.5), ("a.md", 3.0), ("b.md", 2.0)]
    assert named_first(docs, set()) == docs


def test_a_lead_found_by_its_passages_alone_gives_way_to_a_runner_up_its_names_found() -> None:
    docs = [("odf/helpers/diagnosis.md", 1.6), ("k8s/KubeNodeNotReady.md", 1.4), ("k8s/Other.md", 1.0)]
    assert corroborated_lead(docs, {"k8s/KubeNodeNotReady.md", "k8s/Other.md"}) == [
        ("k8s/KubeNodeNotReady.md", 1.6), ("odf/helpers/diagnosis.md", 1.4), ("k8s/Other.md", 1.0)
    ]  # fmt: skip
    assert corroborated_lead(docs, {"k8s/Other.md"}) == docs  # only the runner-up may take the lead
    assert corroborated_lead(docs, set(dict(docs))) == docs  # a corroborated lead stays
    assert corroborated_lead(docs, set()) == docs  # the names ranking found nothing (or was down)


def test_one_alert_at_two_levels_or_thresholds_is_one_family_per_folder() -> None:
    keys = {sibling_key(d) for d in ("vm/GuestVCPUQueueHighWarning.md", "vm/GuestVCPUQueueHighCritical.md")}
    assert keys == {"vm/guest vcpu queue high"}
    assert sibling_key("odf/NooBaaSystemCapacityWarning85.md") == sibling_key("odf/NooBaaSystemCapacityWarning100.md")
    assert sibling_key("odf/CephOSDNearFull.md") == sibling_key("odf/CephOSDCriticallyFull.md")
    assert sibling_key("pg/CNPGClusterHAWarning.md") != sibling_key("other/CNPGClusterHAWarning.md")
    assert sibling_key("k8s/KubeAPIDown.md") != sibling_key("k8s/KubeAPIErrorBudgetBurn.md")


def test_siblings_trade_places_by_the_words_of_the_question_only() -> None:
    docs = [("vm/QueueHighWarning.md", 2.1), ("vm/KubevirtDown.md", 1.0), ("vm/QueueHighCritical.md", 0.9)]
    # The question's "above 20" is in the critical runbook's text only: BM25 tells them apart.
    lexical = {"vm/QueueHighWarning.md": 0.5, "vm/QueueHighCritical.md": 0.6, "vm/KubevirtDown.md": 0.9}
    assert tell_siblings_apart(docs, lexical) == [
        ("vm/QueueHighCritical.md", 2.1), ("vm/KubevirtDown.md", 1.0), ("vm/QueueHighWarning.md", 0.9)
    ]  # fmt: skip
    tie = {"vm/QueueHighWarning.md": 0.5, "vm/QueueHighCritical.md": 0.5}
    assert tell_siblings_apart(docs, tie) == docs


@pytest.mark.parametrize(
    ("query", "doc_id"),
    [
        (
            "pods in namespace payments keep restarting with CrashLoopBackOff, what should I do?",
            "kubernetes/KubePodCrashLooping.md",
        ),
        ("container killed with exit code 137, memory limit reached", "kubernetes/KubeContainerOOMKilled.md"),
        ("FATAL: sorry, too many clients already", "database/PostgresTooManyConnections.md"),
        ("consumer group keeps rebalancing and lag grows", "messaging/KafkaConsumerGroupLagHigh.pdf"),
        ("certificate for shop.example.com expires in 5 days", "network/TLSCertificateExpiringSoon.html"),
        ("ALB targets unhealthy with Target.Timeout", "network/LoadBalancerHealthCheckFailing.txt"),
    ],
)
async def test_the_answering_document_comes_first(sample_kb: Settings, query: str, doc_id: str) -> None:
    async with open_knowledge(sample_kb) as kb:
        result = await kb.retriever.retrieve(query)
    assert result.doc_ids()[0] == doc_id
    ranked = [p for p in result.passages if "context" not in p.ranks]
    assert len(ranked) == sample_kb.retrieval.top_k
    # The rest of the leading runbook follows, so a planner sees all of it.
    context = result.passages[len(ranked) :]
    assert all(p.chunk.doc_id == doc_id and p.score == 0 for p in context)
    assert result.degraded == ()


async def test_a_named_alert_brings_its_node_and_neighbours(sample_kb: Settings) -> None:
    async with open_knowledge(sample_kb) as kb:
        result = await kb.retriever.retrieve("KubePodCrashLooping is firing for checkout")
    first = result.nodes[0]
    assert (first.node.name, first.via, first.score) == ("KubePodCrashLooping", "named", 1.0)
    assert result.passages[0].ranks.get("named") == 1
    # The crash-loop runbook names KubeContainerOOMKilled, so the graph relates them.
    assert "KubeContainerOOMKilled" in {h.node.name for h in result.nodes}
    assert all(p.chunk.chunk_id.startswith(p.chunk.doc_id + "#") for p in result.passages)


async def test_a_graph_that_is_down_degrades_retrieval_but_does_not_stop_it(sample_kb: Settings) -> None:
    await asyncio.to_thread(importlib.import_module, "neo4j")  # its first import reads files (pandas, time zones)
    async with open_knowledge(sample_kb) as kb:
        graph = Neo4jGraphStore(GraphSettings(backend="neo4j", neo4j_uri="bolt://127.0.0.1:9", timeout_s=1))
        retriever = Retriever(kb.index, graph, kb.embedder, sample_kb.retrieval)
        try:
            result = await retriever.retrieve("too many clients")
        finally:
            await graph.aclose()
    assert result.doc_ids()[0] == "database/PostgresTooManyConnections.md"
    assert result.nodes == ()
    assert result.degraded and result.degraded[0].startswith("incident graph unavailable")


async def test_an_index_that_is_down_is_an_error_that_names_it(settings: Settings) -> None:
    from core.settings import RetrievalSettings
    from retrieval.elasticsearch import ElasticsearchChunkIndex

    await asyncio.to_thread(importlib.import_module, "elasticsearch")  # its first import reads package metadata
    async with open_knowledge(settings) as kb:
        cfg = RetrievalSettings(backend="elasticsearch", es_url="http://127.0.0.1:9", timeout_s=1)
        index = ElasticsearchChunkIndex(cfg, dim=384)
        retriever = Retriever(index, kb.graph, kb.embedder, cfg)
        try:
            with pytest.raises(RetrievalUnavailable, match="keyword search unavailable"):
                await retriever.retrieve("disk full")
        finally:
            await index.aclose()


async def test_a_misspelt_question_finds_what_its_correct_spelling_finds(sample_kb: Settings) -> None:
    async with open_knowledge(sample_kb) as kb:
        right = await kb.retriever.retrieve("consumer group keeps rebalancing and lag grows")
        wrong = await kb.retriever.retrieve("consumr group keeps rebalacing and lag grows")
    assert wrong.doc_ids()[0] == right.doc_ids()[0] == "messaging/KafkaConsumerGroupLagHigh.pdf"
    assert wrong.query == "consumr group keeps rebalacing and lag grows"  # the question is kept as asked


async def test_a_runbook_found_by_its_keywords_alone_is_weighed_on_meaning_too(sample_kb: Settings) -> None:
    # Two hits per ranking: the dense top 2 holds the certificate runbook only; BM25 finds the ingress one.
    narrow = sample_kb.model_copy(update={"retrieval": sample_kb.retrieval.model_copy(update={"candidates": 2})})
    async with open_knowledge(narrow) as kb:
        result = await kb.retriever.retrieve("certificate expires and ingress returns 5xx")
    ranked = [p for p in result.passages if "context" not in p.ranks]
    docs = {p.chunk.doc_id for p in ranked}
    assert "network/IngressHTTP5xxRateHigh.md" in docs
    assert docs == {p.chunk.doc_id for p in ranked if 0 < p.raw_scores.get("dense", 0) <= 1}
