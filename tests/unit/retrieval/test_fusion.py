from __future__ import annotations

import pytest

from retrieval.fusion import reciprocal_rank_fusion


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
