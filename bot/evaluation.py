"""``opsflow eval``: run the benchmark's cases; report STEPScore, retrieval hits and latency.

Case format: ``../shared/bench/cases.dev.jsonl`` (id, query, gold_steps, doc_ids, related_doc_ids,
unanswerable…). Step similarity is all-MiniLM-L6-v2 cosine (the benchmark's backend), or token F1
when the model cannot be loaded; the report names which.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from bot.service import PlannerKind, Service
from core.errors import ModelUnavailable
from core.types import Answer, Retrieval
from generation import stepscore
from retrieval.ports import Embedder
from retrieval.retriever import Retriever

EVAL_DEPTH = 20  # passages retrieved per case, enough for a ranking of at least five documents


class Case(BaseModel):
    """One benchmark case; unknown fields are kept but not used here."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str
    query: str
    domain: str = ""
    gold_steps: tuple[dict[str, Any], ...] = ()
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


def prediction(case: Case, answer: Answer) -> dict[str, Any]:
    """One line of the reference scorer's input format."""
    steps = [] if answer.workflow is None else [{"type": s.type, "text": s.text} for s in answer.workflow.steps]
    return {"id": case.id, "steps": steps, "abstain": answer.abstained}


async def _similarity(embedder: Embedder | None, preds: list[str], golds: list[str]) -> np.ndarray:
    if embedder is None:
        return stepscore.lexical_similarity(preds, golds)
    vectors = await embedder.embed(preds + golds)
    return np.asarray(vectors[: len(preds)] @ vectors[len(preds) :].T, dtype=np.float64)


async def evaluate(
    service: Service, embedder: Embedder, cases: Sequence[Case], *, planner: PlannerKind
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Answer every case, score the workflows with STEPScore, and summarise with retrieval and latency."""
    similarity: Embedder | None = embedder
    try:
        await embedder.embed(["warm up"])
    except ModelUnavailable:
        similarity = None
    backend = "minilm" if similarity is not None else "lexical"
    await service.answer("warm up", planner=planner)
    answers: list[Answer] = []
    retrievals: list[Retrieval] = []
    for case in cases:
        answer, retrieval = await service.answer(case.query, k=EVAL_DEPTH, planner=planner)
        answers.append(answer)
        retrievals.append(retrieval)
    predictions = [prediction(c, a) for c, a in zip(cases, answers, strict=True)]
    scored = []
    for case, pred in zip(cases, predictions, strict=True):
        gold = [g for g in case.gold_steps if str(g.get("text", "")).strip()]
        matrix = await _similarity(similarity, [p["text"] for p in pred["steps"]], [g["text"] for g in gold])
        result = stepscore.score_case(
            pred["steps"], gold, lambda _p, _g, m=matrix: m, stepscore.THRESHOLD[backend],
            abstained=pred["abstain"], unanswerable=case.unanswerable,
        )  # fmt: skip
        scored.append(result | {"domain": case.domain})
    summary = {
        "cases": len(cases),
        "answerable": sum(not c.unanswerable for c in cases),
        "planner": planner,
        "model": next((a.model for a in answers if not a.abstained), "none"),
        "fallbacks": sum(a.planner == "extractive (fallback)" for a in answers),
        "similarity": backend,
        "threshold": stepscore.THRESHOLD[backend],
        "stepscore": _rounded(stepscore.aggregate(scored)),
        "by_domain": {
            d: _rounded(stepscore.aggregate([r for r in scored if r["domain"] == d]))
            for d in sorted({r["domain"] for r in scored})
        },
        "retrieval": {k: round(v, 4) for k, v in retrieval_metrics(cases, [r.doc_ids() for r in retrievals]).items()},
        "latency_ms": percentiles([a.latency_ms for a in answers]),
    }
    return summary, predictions


def _rounded(values: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in values.items()}


def markdown_report(summary: dict[str, Any]) -> str:
    """The summary as a Markdown report with a per-domain table."""
    s, r, lat = summary["stepscore"], summary["retrieval"], summary["latency_ms"]
    lines = [
        f"# opsflow eval: {summary['cases']} cases ({summary['answerable']} answerable)",
        "",
        f"planner `{summary['planner']}`, model `{summary['model']}`, "
        f"step similarity {summary['similarity']} (τ {summary['threshold']})",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {k} | {_fmt(s.get(k))} |" for k in ("overall_f1", "f1", "ordered_f1", "hard_f1", "fx_f1")),
        *(f"| {k} | {_fmt(s.get(k))} |" for k in ("no_answer_accuracy", "false_abstain_rate", "type_accuracy")),
        f"| retrieval hit@1 / hit@5 / MRR | {r['hit_at_1']:.3f} / {r['hit_at_5']:.3f} / {r['mrr']:.3f} |",
        f"| latency p50 / p95 | {lat['p50']:.0f} ms / {lat['p95']:.0f} ms |",
        "",
        "| domain | cases | overall F1 | F1 | ordered F1 |",
        "|---|---|---|---|---|",
    ]
    for domain, d in summary["by_domain"].items():
        lines.append(
            f"| {domain or '-'} | {d['n']} | {_fmt(d['overall_f1'])} | {_fmt(d['f1'])} | {_fmt(d['ordered_f1'])} |"
        )
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
