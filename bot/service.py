"""The use cases behind every front end (CLI, Slack): answer a question with a workflow or abstain."""

from __future__ import annotations

import time

from core.settings import PlannerSettings
from core.types import Answer, Retrieval
from generation.extractive import plan_extractive
from generation.validation import validate
from retrieval.retriever import Retriever


def compose(query: str, retrieval: Retrieval, cfg: PlannerSettings) -> Answer:
    """Decide between a workflow and an abstention for ``retrieval`` (pure)."""
    base = {
        "query": query,
        "searched": tuple(retrieval.doc_ids()[:5]),
        "degraded": retrieval.degraded,
        "planner": cfg.kind,
        "model": "none (extractive)",
    }
    if not retrieval.passages:
        return Answer(abstained=True, reason="no runbook matches: the knowledge base returned nothing", **base)
    # The evidence that counts is the leading runbook's own: a strong match elsewhere does not
    # make a weak lead document relevant.
    named = any(h.via == "named" for h in retrieval.nodes)
    best = retrieval.best("dense", retrieval.passages[0].chunk.doc_id)
    if best < cfg.abstain_below and not named:
        lead = retrieval.passages[0].chunk.doc_id
        reason = f"no runbook matches closely enough (nearest, {lead}, scores {best:.2f} < {cfg.abstain_below:.2f})"
        return Answer(abstained=True, reason=reason, **base)
    workflow = plan_extractive(retrieval, max_steps=cfg.max_steps)
    if workflow is None:
        reason = f"the closest runbook, {retrieval.passages[0].chunk.doc_id}, has no diagnosis or mitigation steps"
        return Answer(abstained=True, reason=reason, **base)
    validate(workflow, {p.chunk.chunk_id for p in retrieval.passages})
    sources = tuple(dict.fromkeys(c for s in workflow.steps for c in s.citations))
    return Answer(abstained=False, workflow=workflow, sources=sources, **base)


class Service:
    """Answers questions from the knowledge base."""

    def __init__(self, retriever: Retriever, cfg: PlannerSettings) -> None:
        self._retriever = retriever
        self._cfg = cfg

    async def answer(self, query: str, *, k: int | None = None) -> tuple[Answer, Retrieval]:
        """The answer, and the retrieval it was built from."""
        started = time.perf_counter()
        retrieval = await self._retriever.retrieve(query, k=k)
        answer = compose(query, retrieval, self._cfg)
        return answer.model_copy(update={"latency_ms": round((time.perf_counter() - started) * 1000, 2)}), retrieval
