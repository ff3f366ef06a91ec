from __future__ import annotations

import pytest

from bot.evaluation import Case, first_hit_rank, percentiles, retrieval_metrics


def case(doc_ids: tuple[str, ...], related: tuple[str, ...] = (), unanswerable: bool = False) -> Case:
    return Case(id="c", query="q", doc_ids=doc_ids, related_doc_ids=related, unanswerable=unanswerable)


def test_a_hit_counts_either_answering_or_related_documents() -> None:
    assert first_hit_rank(case(("a",), ("b",)), ["x", "b", "a"]) == 2
    assert first_hit_rank(case(("a",)), ["x", "y"]) is None


def test_metrics_skip_unanswerable_cases() -> None:
    cases = [case(("a",)), case(("b",)), case(("c",)), case((), unanswerable=True)]
    rankings = [["a"], ["x", "y", "b"], ["x"] * 6 + ["c"], ["a"]]
    metrics = retrieval_metrics(cases, rankings)
    assert metrics["hit_at_1"] == pytest.approx(1 / 3)
    assert metrics["hit_at_5"] == pytest.approx(2 / 3)
    assert metrics["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 7) / 3)


def test_percentiles() -> None:
    assert percentiles([float(v) for v in range(1, 101)]) == {"p50": 50.5, "p95": 95.05}
    assert percentiles([3.0]) == {"p50": 3.0, "p95": 3.0}
