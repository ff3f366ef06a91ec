"""The use cases behind every front end (CLI, Slack): answer a question with a workflow or abstain.

Retrieve → abstain when the evidence is weak → plan (the LLM planner, best of N by the Scorer, or
the extractive planner) → validate. The LLM path falls back to the extractive planner when the
model is unreachable or its workflow stays invalid, and the answer says so.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, Protocol, TypeVar

from core.errors import ModelUnavailable, PlanError
from core.settings import PlannerSettings
from core.types import Answer, Retrieval, Workflow
from generation.extractive import plan_extractive
from generation.planner import LlmPlanner
from generation.scorer import Scorer
from generation.validation import validate
from retrieval.retriever import Retriever

PlannerKind = Literal["extractive", "llm"]
T = TypeVar("T")
_CPU = ThreadPoolExecutor(max_workers=1, thread_name_prefix="answer-cpu")


async def off_loop(fn: Callable[[], T]) -> T:
    """``fn()``, pure-Python CPU work of an answer (parsing runbook sections, matching tool schemas), on
    one thread of its own: off the event loop, which also carries Slack's acks, and one at a time. Under
    the GIL more threads would not answer faster, only take the interpreter from the loop more often."""
    return await asyncio.get_running_loop().run_in_executor(_CPU, fn)


RICHNESS = (1.0, 0.75, 0.5)  # the contexts best-of-N candidates are planned from
AGREEMENT_MARGIN = 0.05  # how far below the bar a leading runbook may score when rankings agree on it


def abstention(retrieval: Retrieval, cfg: PlannerSettings) -> str | None:
    """Why the evidence is too weak to plan from, or None when it is strong enough.

    The reason is shown after "No runbook matches:", so it says why, not that nothing matched.
    """
    if not retrieval.passages:
        return "the knowledge base returned nothing"
    # The evidence that counts is the leading runbook's own: a strong match elsewhere does not
    # make a weak lead document relevant. A query naming a known incident is always answered.
    lead = retrieval.passages[0].chunk.doc_id
    best = retrieval.best("dense", lead)
    # Independent rankings agreeing on the lead (two or more rank it first) lower the bar a little.
    # ("context" is no ranking: it numbers the lead runbook's other chunks, added after ranking.)
    firsts = {
        name
        for p in retrieval.passages
        if p.chunk.doc_id == lead
        for name, rank in p.ranks.items()
        if rank == 1 and name != "context"
    }
    bar = cfg.abstain_below - (AGREEMENT_MARGIN if len(firsts) >= 2 else 0.0)
    if best < bar and not any(h.via == "named" for h in retrieval.nodes):
        return f"the nearest runbook, {lead}, scores {best:.2f} (answers need {bar:.2f})"
    return None


class Corrector(Protocol):
    """People's corrections applied to a new answer (``bot.corrections.Corrections``)."""

    async def apply(self, answer: Answer, retrieval: Retrieval) -> Answer: ...


class Service:
    """Answers questions from the knowledge base; ``corrector`` applies people's standing corrections."""

    def __init__(
        self,
        retriever: Retriever,
        cfg: PlannerSettings,
        planner: LlmPlanner,
        scorer: Scorer | None,
        corrector: Corrector | None = None,
    ) -> None:
        self._retriever = retriever
        self._cfg = cfg
        self._planner = planner
        self._scorer = scorer
        self._corrector = corrector

    async def answer(
        self, query: str, *, k: int | None = None, planner: PlannerKind | None = None
    ) -> tuple[Answer, Retrieval]:
        """The answer, and the retrieval it was built from."""
        started = time.perf_counter()
        retrieval = await self._retriever.retrieve(query, k=k)
        answer = await self._compose(retrieval, planner or self._cfg.kind)
        if self._corrector is not None:
            answer = await self._corrector.apply(answer, retrieval)
        return answer.model_copy(update={"latency_ms": round((time.perf_counter() - started) * 1000, 2)}), retrieval

    async def _compose(self, retrieval: Retrieval, kind: PlannerKind) -> Answer:
        base = Answer(
            query=retrieval.query,
            abstained=True,
            searched=tuple(retrieval.doc_ids()[:5]),
            degraded=retrieval.degraded,
            planner=kind,
            model="none",
        )
        if reason := abstention(retrieval, self._cfg):
            return base.model_copy(update={"reason": reason})
        update: dict[str, object] = {}
        workflow = None
        if kind == "llm":
            workflow, update = await self._plan_with_model(retrieval)
            if "abstain" in update:
                return base.model_copy(update={"reason": f"no workflow is good enough: {update['abstain']}"})
        if workflow is None:
            workflow = await off_loop(functools.partial(plan_extractive, retrieval, max_steps=self._cfg.max_steps))
            update["planner"] = "extractive" if kind == "extractive" else "extractive (fallback)"
        if workflow is None:
            lead = retrieval.passages[0].chunk.doc_id
            return base.model_copy(
                update={"reason": f"the closest runbook, {lead}, has no diagnosis or mitigation steps"}
            )
        validate(workflow, {p.chunk.chunk_id for p in retrieval.passages})
        sources = tuple(dict.fromkeys(c for s in workflow.steps for c in s.citations))
        return base.model_copy(update={"abstained": False, "workflow": workflow, "sources": sources, **update})

    async def _plan_with_model(self, retrieval: Retrieval) -> tuple[Workflow | None, dict[str, object]]:
        """The LLM planner's workflow (best of N when a Scorer is set), or None and why not."""
        candidates, failures = [], []
        for richness in RICHNESS[: self._cfg.samples]:
            try:
                candidates.append(await self._planner.plan(retrieval, richness=richness))
            except PlanError as exc:
                failures.append(str(exc))
            except ModelUnavailable as exc:
                note = f"the model is unavailable ({exc}); showing the extractive workflow"
                return None, {"reason": note, "degraded": (*retrieval.degraded, str(exc))}
        model = self._planner.model.name  # read after planning: a promotion may swap the model meanwhile
        if not candidates:
            return None, {
                "reason": f"the model's workflow was invalid ({failures[0]}); showing the extractive workflow"
            }
        if self._scorer is None:
            return candidates[0], {"model": model}
        best, score = await self._scorer.best(retrieval, candidates)
        if self._cfg.min_score is not None and score.value < self._cfg.min_score:
            reasons = "; ".join(score.reasons) or "no reasons given"
            note = f"the Scorer rated the best workflow {score.value:.2f} < {self._cfg.min_score:.2f} ({reasons})"
            return None, {"abstain": note}
        return best, {"model": model, "confidence": score.value}
