from __future__ import annotations

import pytest

from retrieval.bm25 import Bm25Index, term_counts
from retrieval.lexical import index_terms


def index(*chunks: tuple[str, str]) -> Bm25Index:
    return Bm25Index([f"c{i}" for i in range(len(chunks))], [term_counts(h, b) for h, b in chunks])


def test_terms_are_stemmed_split_and_free_of_stop_words() -> None:
    assert index_terms("The replicas are Replicating; KubeAPIDown!") == [
        "replica", "replic", "kubeapidown", "kube", "api", "down",
    ]  # fmt: skip


def test_rare_terms_outrank_common_ones() -> None:
    idx = index(("", "pod restarted"), ("", "pod pending"), ("", "pod evicted by kubelet"), ("", "node pressure"))
    assert [c for c, _ in idx.search("evicted pod", 10)] == ["c2", "c0", "c1"]


def test_heading_words_weigh_more_than_body_words() -> None:
    idx = index(("Disk full", "check usage of the volume"), ("Overview", "a disk can fill up, check usage"))
    assert idx.search("disk", 1)[0][0] == "c0"


def test_search_returns_at_most_k_positive_scores_best_first() -> None:
    idx = index(*[("", "etcd " * (i + 1) + "filler words here") for i in range(20)], ("", "unrelated"))
    hits = idx.search("etcd", 5)
    assert len(hits) == 5
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    assert all(s > 0 for _, s in hits)


@pytest.mark.parametrize("query", ["", "the and of", "zebra"])
def test_queries_without_known_terms_find_nothing(query: str) -> None:
    assert index(("", "etcd leader lost")).search(query, 5) == []


def test_an_empty_index_finds_nothing() -> None:
    assert Bm25Index([], []).search("etcd", 5) == []
