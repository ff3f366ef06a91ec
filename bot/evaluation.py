"""``opsflow eval``: run the benchmark's cases; report STEPScore, retrieval hits and latency; and the
Scorer's pairwise accuracy on pairs built from the same cases (``scorer_pairs``), which its gate compares.

Case format: ``../shared/bench/cases.dev.jsonl`` (id, query, gold_steps, doc_ids, related_doc_ids,
unanswerable…). Step similarity is all-MiniLM-L6-v2 cosine (the benchmark's backend), or token F1
when the model cannot be loaded; the report names which.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from bot.service import PlannerKind, Service
from core.errors import ModelUnavailable, PlanError
from core.types import Answer, Retrieval, Step, Workflow
from generation import stepscore
from generation.editing import chained
from generation.scorer import Scorer
from retrieval.ports import Embedder
from retrieval.retriever import Retriever
from trainer.datasets import corrupted  # the Scorer trains on the same corruptions its gate measures

EVAL_DEPTH = 20  # passages retrieved per case, enough for a ranking of at least five documents
WRONG_BELOW = 0.2  # a workflow with a lower STEPScore F1 against the gold is wrong
ScorerPair = tuple[str, Retrieval, Workflow, Workflow]
"""(kind, retrieval, the better workflow, the worse one): one held-aside pair for the Scorer."""


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


def gold_workflow(case: Case, answer: Workflow | None) -> Workflow:
    """The case's gold steps as a chain (``generation.editing.chained``), each keeping the citations of
    ``answer``'s step at its position, as an engineer's Edit of that answer would; raises PlanError when
    the case has no gold steps."""
    cited = answer.steps if answer is not None else ()
    steps = [
        Step(id=str(i), type=g["type"], text=" ".join(str(g["text"]).split()),
             citations=cited[i].citations if i < len(cited) else ())
        for i, g in enumerate(g for g in case.gold_steps if str(g.get("text", "")).strip())
    ]  # fmt: skip
    return chained(answer.title if answer is not None else case.query, steps)


def lexical_f1(workflow: Workflow, case: Case) -> float:
    """STEPScore F1 of ``workflow`` against the case's gold with lexical similarity (no model needed)."""
    pred = [{"type": s.type, "text": s.text} for s in workflow.steps]
    gold = [g for g in case.gold_steps if str(g.get("text", "")).strip()]
    threshold = stepscore.THRESHOLD["lexical"]
    scored = stepscore.score_case(
        pred, gold, stepscore.lexical_similarity, threshold, abstained=False, unanswerable=False
    )
    return float(scored["f1"])


async def scorer_pairs(service: Service, cases: Sequence[Case], *, seed: int) -> list[ScorerPair]:
    """Pairs the Scorer should order, from the answerable ``cases``: the gold ≻ each of its corrupted copies
    (``trainer.datasets.corrupted``: shuffled, a decision dropped, the next case's gold), and the gold ≻
    the extractive answer when that answer is wrong (F1 below ``WRONG_BELOW``). Cases the extractive
    planner cannot answer are left out. Deterministic for ``seed``."""
    answered = []
    for case in cases:
        if case.unanswerable or not any(str(g.get("text", "")).strip() for g in case.gold_steps):
            continue
        try:
            answer, retrieval = await service.answer(case.query, k=EVAL_DEPTH, planner="extractive")
        except PlanError:
            continue
        if answer.workflow is not None:
            answered.append((case, retrieval, answer.workflow, gold_workflow(case, answer.workflow)))
    rng = random.Random(seed)
    pairs: list[ScorerPair] = []
    for n, (case, retrieval, answer, gold) in enumerate(answered):
        other = answered[(n + 1) % len(answered)][3]
        pairs += [(kind, retrieval, gold, worse) for kind, worse in corrupted(gold, other, rng).items()]
        if lexical_f1(answer, case) < WRONG_BELOW:
            pairs.append(("rejected_answer", retrieval, gold, answer))
    return pairs


async def pairwise_accuracy(scorer: Scorer, pairs: Sequence[ScorerPair]) -> dict[str, Any]:
    """The share of ``pairs`` the Scorer rates the better side of higher (a tie counts half), with the
    share of ties, the number of pairs and the accuracy by kind; ``pairwise_accuracy`` is None without pairs."""
    wins: dict[str, list[float]] = {}
    golds: dict[int, float] = {}  # a gold is rated once: its pairs share it
    for kind, retrieval, good, bad in pairs:
        if id(good) not in golds:
            golds[id(good)] = (await scorer.score(retrieval, good)).value
        better, worse = golds[id(good)], (await scorer.score(retrieval, bad)).value
        wins.setdefault(kind, []).append(1.0 if better > worse else 0.5 if better == worse else 0.0)
    every = [w for ws in wins.values() for w in ws]
    return {
        "pairwise_accuracy": round(sum(every) / len(every), 4) if every else None,
        "ties": round(sum(w == 0.5 for w in every) / len(every), 4) if every else None,
        "pairs": len(every),
        "by_kind": {k: round(sum(ws) / len(ws), 4) for k, ws in sorted(wins.items())},
    }


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
