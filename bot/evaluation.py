"""``opsflow eval``: run the benchmark's cases and measure retrieval (hit@1, hit@5, MRR, latency).

Case format: ``../shared/bench/cases.dev.jsonl`` (id, query, doc_ids, related_doc_ids, unanswerable…).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from core.types import Retrieval
from retrieval.retriever import Retriever

EVAL_DEPTH = 20  # passages retrieved per case, enough for a ranking of at least five documents


class Case(BaseModel):
    """One benchmark case; unknown fields are kept but not used here."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str
    query: str
    domain: str = ""
    doc_ids: tuple[str, ...] = ()
    related_doc_ids: tuple[str, ...] = ()
    unanswerable: bool = False


def load_cases(path: Path) -> list[Case]:
    return [Case.model_validate_json(line) for line in path.read_text().splitlines() if line.strip()]


def first_hit_rank(case: Case, ranked_docs: Sequence[str]) -> int | None:
    """1-based rank of the first document that answers the case, or None."""
    relevant = set(case.doc_ids) | set(case.related_doc_ids)
    return next((i for i, doc in enumerate(ranked_docs, start=1) if doc in relevant), None)


def retrieval_metrics(cases: Sequence[Case], rankings: Sequence[Sequence[str]]) -> dict[str, float]:
    """hit@1, hit@5 and MRR over the answerable cases."""
    ranks = [first_hit_rank(c, r) for c, r in zip(cases, rankings, strict=True) if not c.unanswerable]
    if not ranks:
        return {"hit_at_1": 0.0, "hit_at_5": 0.0, "mrr": 0.0}
    return {
        "hit_at_1": sum(r == 1 for r in ranks) / len(ranks),
        "hit_at_5": sum(r is not None and r <= 5 for r in ranks) / len(ranks),
        "mrr": sum(1 / r for r in ranks if r) / len(ranks),
    }


def percentiles(values: Sequence[float]) -> dict[str, float]:
    if len(values) < 2:
        value = values[0] if values else 0.0
        return {"p50": value, "p95": value}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(cuts[49], 2), "p95": round(cuts[94], 2)}


async def evaluate_retrieval(retriever: Retriever, cases: Sequence[Case]) -> tuple[dict[str, Any], list[Retrieval]]:
    """Retrieve for every case (after one warm-up query) and summarise."""
    await retriever.retrieve("warm up", k=1)
    results = [await retriever.retrieve(c.query, k=EVAL_DEPTH) for c in cases]
    summary = {
        "cases": len(cases),
        "answerable": sum(not c.unanswerable for c in cases),
        "retrieval": {k: round(v, 4) for k, v in retrieval_metrics(cases, [r.doc_ids() for r in results]).items()},
        "latency_ms": percentiles([r.took_ms for r in results]),
    }
    return summary, results
