"""The tantivy keyword index: BM25 behaviour, runbook names, writes seen at once and kept on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrieval import keyword
from retrieval.keyword import ChunkText, KeywordIndex, RunbookText, analysed


def runbook(doc_id: str, *names: str, about: str = "", content_hash: str = "h1") -> RunbookText:
    return RunbookText(doc_id, content_hash, names, about)


def put(index: KeywordIndex, doc_id: str, *chunks: tuple[str, str], names: tuple[str, ...] = ()) -> None:
    texts = [ChunkText(f"{doc_id}#{i}", heading, body) for i, (heading, body) in enumerate(chunks)]
    index.replace(doc_id, texts, runbook(doc_id, *names))


@pytest.fixture
def index(tmp_path: Path) -> KeywordIndex:
    return KeywordIndex(tmp_path / "keywords")


def test_text_is_analysed_into_stems_with_identifiers_split() -> None:
    assert analysed("The replicas are Replicating; KubeAPIDown!") == "replica replic kubeapidown kube api down"


def test_rare_terms_outrank_common_ones(index: KeywordIndex) -> None:
    put(index, "a", ("", "pod restarted"), ("", "pod pending"), ("", "pod evicted by kubelet"), ("", "node pressure"))
    assert [c for c, _ in index.search_chunks("evicted pod", 10)] == ["a#2", "a#0", "a#1"]


def test_heading_words_weigh_more_than_body_words(index: KeywordIndex) -> None:
    put(index, "a", ("Disk full", "check usage of the volume"), ("Overview", "a disk can fill up, check usage"))
    assert index.search_chunks("disk", 1)[0][0] == "a#0"


def test_search_returns_at_most_k_positive_scores_best_first(index: KeywordIndex) -> None:
    put(index, "a", *[("", "etcd " * (i + 1) + "filler words here") for i in range(20)], ("", "unrelated"))
    hits = index.search_chunks("etcd", 5)
    assert len(hits) == 5
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    assert all(s > 0 for _, s in hits)


@pytest.mark.parametrize("query", ["", "the and of", "zebra"])
def test_queries_without_known_terms_find_nothing(index: KeywordIndex, query: str) -> None:
    put(index, "a", ("", "etcd leader lost"))
    assert index.search_chunks(query, 5) == []


def test_an_empty_index_finds_nothing(index: KeywordIndex) -> None:
    assert index.search_chunks("etcd", 5) == []
    assert index.search_runbooks("etcd", 5) == []


def test_runbooks_are_found_by_the_words_of_their_names(index: KeywordIndex) -> None:
    put(index, "k8s/KubePodCrashLooping.md", ("Meaning", "the app dies"), names=("KubePodCrashLooping",))
    put(index, "db/PgLag.md", ("Meaning", "pods of the standby lag"), names=("PostgresReplicationLag",))
    for query in ("kube pod crash looping", "CrashLoopBackOff in payments", "KubePodCrashLooping"):
        assert [d for d, _ in index.search_runbooks(query, 5)] == ["k8s/KubePodCrashLooping.md"]
    # Chunk words are not runbook names.
    assert index.search_runbooks("standby", 5) == []


def test_a_replaced_document_keeps_only_its_new_entries(index: KeywordIndex) -> None:
    put(index, "a", ("", "etcd leader lost"), ("", "etcd quorum"), names=("EtcdNoLeader",))
    put(index, "a", ("", "etcd quorum"), names=("EtcdQuorum",))
    assert [c for c, _ in index.search_chunks("etcd", 5)] == ["a#0"]
    assert index.search_runbooks("no leader", 5) == []
    index.remove(["a", "never-written"])
    assert index.search_chunks("etcd", 5) == []
    assert index.runbook_hashes() == {}


def test_what_was_written_is_found_by_the_next_process_without_rebuilding(tmp_path: Path) -> None:
    first = KeywordIndex(tmp_path / "keywords")
    first.replace("a", [ChunkText("a#0", "", "disk full")], runbook("a", "NodeDiskFull", content_hash="h7"))
    first.flush()
    again = KeywordIndex(tmp_path / "keywords")
    assert [c for c, _ in again.search_chunks("disk", 5)] == ["a#0"]
    assert again.runbook_hashes() == {"a": "h7"}


def test_writes_are_committed_in_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(KeywordIndex, "COMMIT_EVERY", 2)
    writer = KeywordIndex(tmp_path / "keywords")
    put(writer, "a", ("", "disk full"))
    assert KeywordIndex(tmp_path / "keywords").search_chunks("disk", 5) == []  # another process sees no batch yet
    put(writer, "b", ("", "disk slow"))
    assert len(KeywordIndex(tmp_path / "keywords").search_chunks("disk", 5)) == 2


def test_misspelt_words_are_corrected_to_the_most_frequent_indexed_spelling(index: KeywordIndex) -> None:
    put(
        index,
        "a",
        ("Migrations", "the VMI migrated again; too many connections"),
        ("Standby", "a standby is not streaming; connections refused"),
    )
    put(index, "b", ("Connectors", "the connector migrated"))
    assert index.spelling("VMI migarted 15 times") == "VMI migrated 15 times"  # two letters swapped: one edit
    assert index.spelling("short-lived conections, one standy") == "short-lived connections, one standby"
    assert index.spelling("cannot scrape, reconcile loop") == "cannot scrape, reconcile loop"  # nothing close: kept


def test_known_words_short_words_and_other_forms_of_known_words_are_kept(index: KeywordIndex) -> None:
    put(index, "a", ("Inserts", "an insert failed on the table"), ("Pods", "a pod is pending"))
    assert index.spelling("inserting into a tabel") == "inserting into a table"  # "inserting": a form of "insert"
    assert index.spelling("pdos pendng") == "pdos pending"  # four letters are too few to correct
    assert index.spelling("inserts fail on the tables") == "inserts fail on the tables"


def test_a_document_analysed_by_another_version_reads_as_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = KeywordIndex(tmp_path / "keywords")
    first.replace("a", [ChunkText("a#0", "", "disk full")], runbook("a", "NodeDiskFull", content_hash="h7"))
    first.flush()
    monkeypatch.setattr(keyword, "ANALYSIS", keyword.ANALYSIS + 1)
    assert KeywordIndex(tmp_path / "keywords").runbook_hashes() == {"a": ""}  # its owner re-indexes it


def test_an_index_of_an_older_schema_is_dropped_for_a_rebuild(tmp_path: Path) -> None:
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_text_field("key", stored=True, tokenizer_name="raw")
    (tmp_path / "keywords").mkdir()
    old = tantivy.Index(builder.build(), path=str(tmp_path / "keywords"))
    writer = old.writer(heap_size=15_000_000, num_threads=1)
    writer.add_document(tantivy.Document(key="stale"))
    writer.commit()
    writer.wait_merging_threads()
    index = KeywordIndex(tmp_path / "keywords")
    assert index.runbook_hashes() == {}
    put(index, "a", ("Disk", "disk full"))
    assert index.search_chunks("disk", 5)[0][0] == "a#0"


def test_a_real_word_no_runbook_uses_is_no_typo_of_one_that_does(index: KeywordIndex) -> None:
    put(index, "a", ("Scaling", "the deployment was scaled down"))
    assert index.spelling("vault is sealed") == "vault is sealed"  # one edit from "scaled", but English
    assert index.spelling("it was scalde") == "it was scaled"
