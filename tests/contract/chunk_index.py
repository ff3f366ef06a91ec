"""The behaviour every ChunkIndex adapter must show; subclass with an ``index`` fixture."""

from __future__ import annotations

import numpy as np
import pytest

from core.types import Chunk, IncidentNode, Section, SourceDocument
from retrieval.ports import ChunkIndex

DIM = 8


def make_doc(doc_id: str, texts: list[str], *, source: str = "/runbooks", version: str = "v1") -> tuple:
    doc = SourceDocument(
        doc_id=doc_id,
        source=source,
        title=doc_id.rsplit("/", 1)[-1].removesuffix(".md"),
        kind="markdown",
        content_hash=f"{doc_id}-{version}",
        sections=tuple(Section(heading_path=("Diagnosis",), text=t) for t in texts),
    )
    chunks = [
        Chunk(chunk_id=f"{doc_id}#{i}", doc_id=doc_id, ordinal=i, title=doc.title, heading_path=("Diagnosis",), text=t)
        for i, t in enumerate(texts)
    ]
    incidents = [IncidentNode(name=doc.title, description=texts[0], chunk_ids=(chunks[0].chunk_id,), doc_ids=(doc_id,))]
    return doc, chunks, incidents


def unit(seed: int) -> np.ndarray:
    vec = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return vec / np.linalg.norm(vec)


class ChunkIndexContract:
    @pytest.fixture
    async def index(self) -> ChunkIndex:
        raise NotImplementedError

    async def put(self, index: ChunkIndex, doc_id: str, texts: list[str], seeds: list[int], **kw) -> None:
        doc, chunks, incidents = make_doc(doc_id, texts, **kw)
        await index.replace_document(doc, chunks, np.stack([unit(s) for s in seeds]), incidents)

    async def test_replace_is_idempotent_by_doc_id(self, index: ChunkIndex) -> None:
        await self.put(index, "db/PgLag.md", ["replication lag grows", "check pg_stat_replication"], [1, 2])
        await self.put(index, "db/PgLag.md", ["replication lag grows"], [1], version="v2")
        assert await index.counts() == {"documents": 1, "chunks": 1}
        assert await index.document_hashes() == {"db/PgLag.md": "db/PgLag.md-v2"}

    async def test_hashes_are_scoped_by_source(self, index: ChunkIndex) -> None:
        await self.put(index, "a.md", ["disk full on host"], [1], source="/one")
        await self.put(index, "b.md", ["certificate expires soon"], [2], source="/two")
        assert await index.document_hashes("/one") == {"a.md": "a.md-v1"}
        assert set(await index.document_hashes()) == {"a.md", "b.md"}

    async def test_lexical_finds_words_and_split_identifiers(self, index: ChunkIndex) -> None:
        await self.put(index, "k8s/KubeAPIDown.md", ["the KubeAPIDown alert fires when apiservers vanish"], [1])
        await self.put(index, "db/PgLag.md", ["replication lag on the standby"], [2])
        assert [c for c, _ in await index.lexical("kube api down", 5)] == ["k8s/KubeAPIDown.md#0"]
        assert [c for c, _ in await index.lexical("How is replication?", 5)] == ["db/PgLag.md#0"]

    async def test_lexical_matches_identifiers_by_their_words_both_ways(self, index: ChunkIndex) -> None:
        await self.put(index, "k8s/ApiServer.md", ["when the kube api is down, kubectl times out"], [1])
        await self.put(index, "db/PgLag.md", ["replication lag on the standby"], [2])
        assert [c for c, _ in await index.lexical("KubeAPIDown", 5)] == ["k8s/ApiServer.md#0"]

    async def test_runbooks_rank_documents_by_the_words_of_their_names(self, index: ChunkIndex) -> None:
        await self.put(index, "k8s/KubePodCrashLooping.md", ["the container exits and is started again"], [1])
        await self.put(index, "k8s/KubePodNotReady.md", ["the pod is not ready, probes fail"], [2])
        await self.put(index, "db/PgLag.md", ["pod restarts make the standby lag"], [3])
        for query in ("kube pod crash looping", "payments pods in CrashLoopBackOff", "KubePodCrashLooping"):
            assert (await index.runbooks(query, 5))[0][0] == "k8s/KubePodCrashLooping.md"
        assert [d for d, _ in await index.runbooks("pod not ready", 1)] == ["k8s/KubePodNotReady.md"]

    async def test_runbooks_rank_by_incident_descriptions_too(self, index: ChunkIndex) -> None:
        await self.put(index, "k8s/KubePodCrashLooping.md", ["the app dies and kubernetes restarts it"], [1])
        await self.put(index, "db/PgLag.md", ["replication falls behind"], [2])
        assert [d for d, _ in await index.runbooks("my app dies", 5)] == ["k8s/KubePodCrashLooping.md"]
        assert await index.runbooks("what is the", 5) == []

    async def test_removed_documents_leave_the_runbook_ranking(self, index: ChunkIndex) -> None:
        await self.put(index, "a/KafkaLag.md", ["consumer lag"], [1])
        await self.put(index, "b/KafkaDown.md", ["broker down"], [2])
        await index.remove_documents(["a/KafkaLag.md"])
        assert [d for d, _ in await index.runbooks("kafka lag", 5)] == ["b/KafkaDown.md"]

    async def test_lexical_returns_at_most_k_best_first(self, index: ChunkIndex) -> None:
        texts = [f"disk {'full ' * (i + 1)}on node {i}" for i in range(5)]
        await self.put(index, "disk.md", texts, list(range(5)))
        hits = await index.lexical("disk full", 3)
        assert len(hits) == 3
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)

    async def test_lexical_with_only_stop_words_is_empty(self, index: ChunkIndex) -> None:
        await self.put(index, "a.md", ["what is this"], [1])
        assert await index.lexical("what is the", 5) == []

    async def test_dense_ranks_by_cosine(self, index: ChunkIndex) -> None:
        await self.put(index, "a.md", ["one", "two", "three"], [1, 2, 3])
        hits = await index.dense(unit(2), 2)
        assert hits[0][0] == "a.md#1"
        assert hits[0][1] == pytest.approx(1.0, abs=1e-4)
        assert len(hits) == 2

    async def test_dense_within_documents_ranks_only_their_chunks(self, index: ChunkIndex) -> None:
        await self.put(index, "a.md", ["one", "two"], [1, 2])
        await self.put(index, "b.md", ["three"], [3])
        await self.put(index, "c.md", ["four"], [4])
        hits = await index.dense(unit(2), 5, within={"b.md", "c.md", "never-ingested.md"})
        assert sorted(c for c, _ in hits) == ["b.md#0", "c.md#0"]
        assert await index.dense(unit(2), 5, within=set()) == []

    async def test_dense_on_empty_index_is_empty(self, index: ChunkIndex) -> None:
        assert await index.dense(unit(1), 5) == []

    async def test_remove_deletes_chunks_from_every_ranking(self, index: ChunkIndex) -> None:
        await self.put(index, "a.md", ["kafka consumer lag"], [1])
        await self.put(index, "b.md", ["kafka broker down"], [2])
        await index.remove_documents(["a.md", "never-ingested.md"])
        assert [c for c, _ in await index.lexical("kafka", 5)] == ["b.md#0"]
        assert [c for c, _ in await index.dense(unit(1), 5)] == ["b.md#0"]
        assert await index.chunks(["a.md#0", "b.md#0"]) == {"b.md#0": (await index.chunks(["b.md#0"]))["b.md#0"]}

    async def test_chunks_round_trip(self, index: ChunkIndex) -> None:
        doc, chunks, incidents = make_doc("net/Dns.md", ["dig @10.0.0.10 example.com", "restart coredns"])
        await index.replace_document(doc, chunks, np.stack([unit(1), unit(2)]), incidents)
        found = await index.chunks(["net/Dns.md#1", "missing#0"])
        assert found == {"net/Dns.md#1": chunks[1]}

    async def test_incident_candidates_follow_documents(self, index: ChunkIndex) -> None:
        await self.put(index, "b.md", ["broker down"], [1])
        await self.put(index, "a.md", ["disk full"], [2])
        assert [n.name for n in await index.incident_candidates()] == ["a", "b"]
        await index.remove_documents(["a.md"])
        assert [n.name for n in await index.incident_candidates()] == ["b"]
