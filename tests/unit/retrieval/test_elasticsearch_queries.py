"""The Elasticsearch adapter's pure parts: index bodies, query bodies, bulk actions, score and error mapping."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from core.errors import ConfigError, RetrievalUnavailable
from core.settings import RetrievalSettings
from core.types import Chunk, IncidentNode, Section, SourceDocument
from retrieval.elasticsearch import (
    FORMAT,
    HEADING_BOOST,
    MAX_WINDOW,
    NAME_BOOST,
    ElasticsearchChunkIndex,
    check_format,
    chunk_actions,
    chunk_from_source,
    chunk_index_body,
    cosine_from_score,
    docs_entry,
    docs_index_body,
    docs_index_name,
    docs_query,
    hits,
    knn_query,
    lexical_query,
    map_elasticsearch_errors,
    mapped_dims,
    runbook_query,
    source_query,
    stale_chunks_query,
)
from retrieval.lexical import STOP_WORDS, expand_identifiers, query_terms

elasticsearch = pytest.importorskip("elasticsearch")
elastic_transport = pytest.importorskip("elastic_transport")
bulk_helpers = pytest.importorskip("elasticsearch.helpers")

DOC = SourceDocument(
    doc_id="k8s/KubeAPIDown.md", source="/runbooks", title="KubeAPIDown", kind="markdown", content_hash="h1",
    sections=(Section(heading_path=("Diagnosis",), text="x"),),
)  # fmt: skip
CHUNK = Chunk(
    chunk_id="k8s/KubeAPIDown.md#0", doc_id=DOC.doc_id, ordinal=0, title="KubeAPIDown",
    heading_path=("Diagnosis", "CoreDNS"), text="the KubeAPIDown alert fires",
)  # fmt: skip


def test_chunk_index_maps_vectors_as_exact_float_cosine_hnsw() -> None:
    vec = chunk_index_body(384)["mappings"]["properties"]["vec"]
    assert vec == {
        "type": "dense_vector",
        "dims": 384,
        "index": True,
        "similarity": "cosine",
        "index_options": {"type": "hnsw"},
    }


def test_chunk_index_searches_heading_and_body_and_only_stores_raw_text() -> None:
    body = chunk_index_body(8)
    props = body["mappings"]["properties"]
    analysed = {"type": "text", "analyzer": "opsflow_text", "search_analyzer": "opsflow_query"}
    assert props["heading"] == props["body"] == analysed
    assert props["text"] == {"type": "text", "index": False}
    assert props["heading_path"] == props["doc_id"] == props["write_id"] == {"type": "keyword"}
    assert body["mappings"]["dynamic"] == "strict"
    assert body["mappings"]["_meta"] == {"opsflow_format": FORMAT}


def test_the_server_splits_identifiers_on_case_changes_and_digits_keeping_the_original() -> None:
    analysis = chunk_index_body(8)["settings"]["analysis"]
    parts = analysis["filter"]["opsflow_parts"]
    assert parts["type"] == "word_delimiter_graph"
    assert parts["split_on_case_change"] and parts["split_on_numerics"] and parts["preserve_original"]
    # Index-time graphs must be flattened; the search analyser keeps the graph.
    index_filters = analysis["analyzer"]["opsflow_text"]["filter"]
    query_filters = analysis["analyzer"]["opsflow_query"]["filter"]
    assert index_filters == [
        "opsflow_not", "opsflow_parts", "flatten_graph", "lowercase", "opsflow_stop", "opsflow_stem"
    ]  # fmt: skip
    # A negated state is a term of its own, as retrieval.lexical makes it (Java's \p{Lu} is [A-Z] here).
    negated = analysis["filter"]["opsflow_not"]
    assert negated["type"] == "pattern_capture" and negated["preserve_original"]
    pattern = re.compile(negated["patterns"][0].replace("\\p{Lu}", "[A-Z]").replace("\\p{Ll}", "[a-z]"))
    for identifier, terms in (("KubeNodeNotReady", ["NotReady"]), ("NotRHCOSImage", ["NotRHCOS"]), ("Notices", [])):
        assert pattern.findall(identifier) == terms
        assert set(terms) <= set(expand_identifiers(identifier).split())
    assert query_filters == [f for f in index_filters if f != "flatten_graph"]
    # Same stop words and stemmer (Snowball English) as the embedded index.
    assert set(analysis["filter"]["opsflow_stop"]["stopwords"]) == STOP_WORDS
    assert analysis["filter"]["opsflow_stem"] == {"type": "snowball", "language": "English"}


def test_docs_index_stores_incidents_without_indexing_them_and_analyses_names() -> None:
    body = docs_index_body()
    mappings = body["mappings"]
    assert mappings["properties"]["incidents"] == {"type": "object", "enabled": False}
    assert mappings["properties"]["names"] == chunk_index_body(8)["mappings"]["properties"]["body"]
    assert mappings["properties"]["about"] == mappings["properties"]["names"]
    assert body["settings"]["analysis"] == chunk_index_body(8)["settings"]["analysis"]
    assert mappings["properties"]["source"] == {"type": "keyword"}
    assert mappings["dynamic"] == "strict"
    assert docs_index_name("opsflow-chunks") == "opsflow-chunks-docs"


def test_mapped_dims_reads_an_existing_index() -> None:
    assert mapped_dims({"real-name": {"mappings": {"properties": {"vec": {"dims": 384}}}}}) == 384
    assert mapped_dims({"real-name": {"mappings": {}}}) is None
    assert mapped_dims({}) is None


def test_lexical_query_boosts_the_heading_and_leaves_analysis_to_the_server() -> None:
    assert lexical_query("Is KubeAPIDown firing?", 5) == {
        "query": {
            "multi_match": {
                "query": "Is KubeAPIDown firing?",
                "fields": [f"heading^{HEADING_BOOST}", "body"],
                "type": "most_fields",
            }
        },
        "size": 5,
        "source": False,
    }
    assert HEADING_BOOST == 3


def test_runbook_query_ranks_the_docs_index_by_names_then_descriptions() -> None:
    match = runbook_query("pods in CrashLoopBackOff", 7)
    assert match["query"]["multi_match"]["fields"] == [f"names^{NAME_BOOST}", "about"]
    assert (match["size"], match["source"]) == (7, False)


def test_user_text_only_ever_goes_into_multi_match() -> None:
    # multi_match parses no query syntax (query_string would): field names, wildcards and
    # operators in a question are plain words to it.
    text = 'title:"Disk*" AND (full OR node~2) -host\\ KubeAPIDown'
    for body in (lexical_query(text, 5), runbook_query(text, 5)):
        assert list(body["query"]) == ["multi_match"]
        assert body["query"]["multi_match"]["query"] == text


def test_a_query_of_stop_words_has_no_terms() -> None:
    assert query_terms("what is the") == []


def test_lexical_size_is_capped_at_the_result_window() -> None:
    assert lexical_query("disk", 50_000)["size"] == MAX_WINDOW


@pytest.mark.parametrize(("k", "candidates"), [(1, 100), (50, 100), (80, 160), (9_000, MAX_WINDOW)])
def test_knn_query_takes_at_least_100_candidates(k: int, candidates: int) -> None:
    knn = knn_query(np.ones(4), k)
    assert knn["knn"]["num_candidates"] == candidates
    assert knn["knn"]["k"] == knn["size"] == k


def test_knn_query_within_documents_filters_on_their_ids() -> None:
    knn = knn_query(np.ones(4), 10, within={"b.md", "a.md"})
    assert knn["knn"]["filter"] == {"terms": {"doc_id": ["a.md", "b.md"]}}
    assert "filter" not in knn_query(np.ones(4), 10)["knn"]


def test_knn_query_exact_body() -> None:
    vector = np.array([0.5, -0.25, 0.0, 1.0], dtype=np.float64)
    assert knn_query(vector, 3) == {
        "knn": {"field": "vec", "query_vector": [0.5, -0.25, 0.0, 1.0], "k": 3, "num_candidates": 100},
        "size": 3,
        "source": False,
    }
    assert all(type(x) is float for x in knn_query(vector, 3)["knn"]["query_vector"])


def test_knn_k_is_capped() -> None:
    knn = knn_query(np.ones(4), 20_000)
    assert knn["knn"]["k"] == knn["knn"]["num_candidates"] == knn["size"] == MAX_WINDOW


@pytest.mark.parametrize(("score", "cosine"), [(1.0, 1.0), (0.5, 0.0), (0.0, -1.0), (0.75, 0.5)])
def test_cosine_is_recovered_from_the_es_score(score: float, cosine: float) -> None:
    assert cosine_from_score(score) == pytest.approx(cosine)


def test_hits_keep_order_and_convert_only_dense_scores() -> None:
    response = {"hits": {"hits": [{"_id": "a#0", "_score": 1.0}, {"_id": "b#0", "_score": 0.5}]}}
    assert hits(response) == [("a#0", 1.0), ("b#0", 0.5)]
    assert hits(response, cosine=True) == [("a#0", 1.0), ("b#0", 0.0)]
    assert hits({"hits": {"hits": []}}) == []


def test_chunk_actions_send_the_text_as_written_and_tag_the_write() -> None:
    [action] = chunk_actions("idx", DOC, [CHUNK], np.full((1, 4), 0.5), "w1")
    assert {k: v for k, v in action.items() if k != "_source"} == {
        "_op_type": "index",
        "_index": "idx",
        "_id": CHUNK.chunk_id,
    }
    src = action["_source"]
    assert src["heading"] == "KubeAPIDown > Diagnosis > CoreDNS"
    assert src["body"] == "the KubeAPIDown alert fires"
    assert src["text"] == CHUNK.text
    assert src["heading_path"] == ["Diagnosis", "CoreDNS"]
    assert (src["doc_id"], src["write_id"], src["vec"]) == (DOC.doc_id, "w1", [0.5] * 4)
    assert set(src) <= set(chunk_index_body(4)["mappings"]["properties"])


def test_chunk_actions_survive_the_bulk_helper_intact() -> None:
    # The helper lifts keys such as "version" into the action line; everything must stay in the body.
    [action] = chunk_actions("idx", DOC, [CHUNK], np.zeros((1, 4)), "w1")
    header, body = bulk_helpers.expand_action(action)
    assert header == {"index": {"_index": "idx", "_id": CHUNK.chunk_id}}
    assert body == action["_source"]


def test_chunk_actions_need_one_vector_per_chunk() -> None:
    with pytest.raises(ValueError):
        chunk_actions("idx", DOC, [CHUNK], np.zeros((2, 4)), "w1")


def test_chunks_round_trip_through_the_stored_source() -> None:
    [action] = chunk_actions("idx", DOC, [CHUNK], np.zeros((1, 4)), "w1")
    assert chunk_from_source(action["_source"]) == CHUNK


def test_docs_entry_round_trips_incidents() -> None:
    node = IncidentNode(name="KubeAPIDown", mitigation=("restart",), chunk_ids=(CHUNK.chunk_id,))
    entry = docs_entry(DOC, [node], "w1", 1)
    assert "node_id" not in entry["incidents"][0]
    assert [IncidentNode.model_validate(n) for n in entry["incidents"]] == [node]
    assert set(entry) == set(docs_index_body()["mappings"]["properties"])
    assert (entry["content_hash"], entry["write_id"], entry["chunk_count"]) == ("h1", "w1", 1)


def test_docs_entry_names_the_runbook_and_says_what_it_is_about() -> None:
    node = IncidentNode(name="KubeAPIDown", aliases=("APIServerDown",), description="the API server is gone")
    entry = docs_entry(DOC, [node], "w1", 1)
    assert entry["names"] == "KubeAPIDown\nAPIServerDown"
    assert entry["about"] == "the API server is gone"


def test_an_index_of_another_format_is_refused_with_what_to_do() -> None:
    current = {"real": {"mappings": {"_meta": {"opsflow_format": FORMAT}}}}
    check_format("idx", current)
    with pytest.raises(ConfigError, match="format 1, this opsflow needs"):
        check_format("idx", {"real": {"mappings": {"properties": {}}}})


def test_stale_chunks_are_this_documents_other_writes() -> None:
    assert stale_chunks_query("a.md", "w2") == {
        "bool": {"filter": [{"term": {"doc_id": "a.md"}}], "must_not": [{"term": {"write_id": "w2"}}]}
    }


def test_document_filters() -> None:
    assert docs_query(("a.md", "b.md")) == {"terms": {"doc_id": ["a.md", "b.md"]}}
    assert source_query(None) == {"match_all": {}}
    assert source_query("/runbooks") == {"term": {"source": "/runbooks"}}


def _api_error(cls: Any, status: int) -> Any:
    node = elastic_transport.NodeConfig("http", "localhost", 9200)
    meta = elastic_transport.ApiResponseMeta(status, "1.1", elastic_transport.HttpHeaders(), 0.0, node)
    return cls(message="boom", meta=meta, body={})


@pytest.mark.parametrize(
    ("cls", "status"),
    [("ApiError", 503), ("ApiError", 500), ("AuthenticationException", 401), ("ApiError", 429)],
)
def test_server_side_failures_become_retrieval_unavailable(cls: str, status: int) -> None:
    error = _api_error(getattr(elasticsearch, cls), status)
    with pytest.raises(RetrievalUnavailable) as caught, map_elasticsearch_errors("search"):
        raise error
    assert caught.value.backend == "elasticsearch"
    assert caught.value.__cause__ is error


def test_transport_failures_become_retrieval_unavailable() -> None:
    error = elasticsearch.ConnectionTimeout("timed out")
    with pytest.raises(RetrievalUnavailable) as caught, map_elasticsearch_errors("search"):
        raise error
    assert caught.value.__cause__ is error


def test_our_own_bad_requests_are_not_hidden() -> None:
    with pytest.raises(elasticsearch.BadRequestError), map_elasticsearch_errors("search"):
        raise _api_error(elasticsearch.BadRequestError, 400)


async def test_queries_without_terms_or_k_never_reach_the_server() -> None:
    # Nothing listens on loopback port 9: any request would raise RetrievalUnavailable.
    settings = RetrievalSettings(backend="elasticsearch", es_url="http://127.0.0.1:9", timeout_s=0.5)
    index = ElasticsearchChunkIndex(settings, dim=4)
    try:
        assert await index.lexical("what is the?", 5) == []
        assert await index.runbooks("what is the?", 5) == []
        assert await index.runbooks("disk full", 0) == []
        assert await index.lexical("disk full", 0) == []
        assert await index.dense(np.ones(4), 0) == []
        assert await index.chunks([]) == {}
        await index.remove_documents([])
    finally:
        await index.aclose()
