from __future__ import annotations

import pytest

from retrieval.fusion import doc_of, reciprocal_rank_fusion, score_documents


def test_items_found_by_both_rankings_win() -> None:
    fused = reciprocal_rank_fusion({"bm25": ["a", "b", "c"], "dense": ["c", "a", "d"]}, k=60)
    assert [item for item, _, _ in fused] == ["a", "c", "b", "d"]
    assert fused[0][2] == {"bm25": 1, "dense": 2}
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)


def test_duplicates_within_a_ranking_count_once() -> None:
    fused = reciprocal_rank_fusion({"named": ["x", "x", "y"]}, k=1)
    assert [(i, s) for i, s, _ in fused] == [("x", 0.5), ("y", pytest.approx(1 / 3))]


def test_weights_scale_a_ranking() -> None:
    fused = reciprocal_rank_fusion({"bm25": ["a"], "dense": ["b"]}, weights={"dense": 2.0})
    assert [item for item, _, _ in fused] == ["b", "a"]


def test_ties_keep_first_seen_order_and_empty_input_is_empty() -> None:
    assert [i for i, _, _ in reciprocal_rank_fusion({"x": ["p"], "y": ["q"]})] == ["p", "q"]
    assert reciprocal_rank_fusion({}) == []


def test_a_documents_passages_add_up_a_little() -> None:
    bm25 = [("a#0", 10.0), ("b#0", 9.0), ("b#1", 8.0), ("b#2", 5.0), ("b#3", 5.0)]
    ranked = score_documents({"bm25": bm25}, {}, weights={"bm25": 1.0}, more=0.1)
    assert ranked == [("b", pytest.approx((9 + 0.1 * 13) / 10)), ("a", 1.0)]
    assert [d for d, _ in score_documents({"bm25": bm25}, {}, weights={}, more=0.0)] == ["a", "b"]


def test_cosines_count_above_a_floor_whatever_the_other_hits() -> None:
    dense = [("a#0", 0.7), ("a#1", 0.69), ("b#0", 0.3)]
    ranked = score_documents({"dense": dense}, {}, weights={"dense": 2.0}, cosine_floor=0.4)
    assert ranked == [("a", pytest.approx(2 * 0.3 / 0.6)), ("b", 0.0)]


def test_document_rankings_join_the_chunk_rankings() -> None:
    ranked = score_documents(
        {"bm25": [("a#3", 4.0), ("c#0", 2.0)]}, {"runbook": [("b", 6.0), ("c", 3.0)]}, weights={"runbook": 2.0}
    )
    assert ranked == [("b", 2.0), ("c", pytest.approx(0.5 + 2 * 0.5)), ("a", 1.0)]


def test_documents_of_chunk_ids_keep_hashes_in_their_path() -> None:
    assert doc_of("docs/a#b.md#12") == "docs/a#b.md"
    assert score_documents({}, {}, weights={}) == []
