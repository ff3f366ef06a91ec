"""FlowXpert's Planner: question + retrieved chunks and nodes → a typed workflow, by a chat model.

The model answers in JSON constrained by ``WORKFLOW_SCHEMA``; each step cites sources by their
number in the prompt. An invalid workflow gets one repair round with the problems listed; if it is
still invalid, ``PlanError`` tells the caller to fall back to the extractive planner.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pydantic import BaseModel, Field, ValidationError

from core.errors import PlanError
from core.types import Branches, Citation, Retrieval, Step, ToolSpec, Workflow
from generation.ports import ChatModel, Message
from generation.prompts import WORKFLOW_SCHEMA, planner_messages, repair_message, select_context
from generation.validation import problems

MAX_TOKENS = 1200


class _RawStep(BaseModel):
    id: str
    type: str
    text: str
    next: str | None = None
    yes: str | None = None
    no: str | None = None
    sources: list[int] = Field(default_factory=list)


class _RawWorkflow(BaseModel):
    title: str
    steps: list[_RawStep]


def parse_workflow(raw: str, retrieval: Retrieval, richness: float) -> Workflow:
    """The model's JSON as a ``Workflow``; citations resolved from source numbers. Raises PlanError."""
    context = select_context(retrieval, richness)
    try:
        parsed = _RawWorkflow.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        raise PlanError(f"the model's reply is not a workflow: {exc}", raw=raw) from exc
    steps = []
    for s in parsed.steps:
        cited = [context.passages[n - 1].chunk for n in s.sources if 1 <= n <= len(context.passages)]
        citations = tuple(dict.fromkeys(Citation(doc_id=c.doc_id, chunk_id=c.chunk_id) for c in cited))
        branches = Branches(yes=s.yes, no=s.no) if s.type == "decision" and s.yes and s.no else None
        kind = s.type if s.type in ("process", "decision", "terminal") else "process"
        steps.append(
            Step(id=s.id, type=kind, text=s.text.strip(), next=s.next or None, branches=branches, citations=citations)  # type: ignore[arg-type]
        )
    return Workflow(title=parsed.title.strip() or retrieval.query, steps=tuple(steps))


def unsupported(workflow: Workflow) -> list[str]:
    """Steps that cite no retrieved source: the planner must ground every step."""
    return [f"{s.id} cites no source" for s in workflow.steps if not s.citations]


class LlmPlanner:
    """Writes workflows with ``model``; ``richness`` (0–1) is how much retrieved context it sees, and
    ``tools`` the checks its steps may propose (in backticks; ``generation.actions`` maps them)."""

    def __init__(self, model: ChatModel, *, max_tokens: int = MAX_TOKENS, tools: Sequence[ToolSpec] = ()) -> None:
        self.model = model
        self._max_tokens = max_tokens
        self._tools = tuple(tools)

    async def plan(self, retrieval: Retrieval, *, richness: float = 1.0) -> Workflow:
        """A validated workflow, after at most one repair round; else ``PlanError``."""
        messages: list[Message] = planner_messages(retrieval, richness, self._tools)
        raw = await self._complete(messages)
        found, workflow = self._check(raw, retrieval, richness)
        if not found and workflow is not None:
            return workflow
        messages += [{"role": "assistant", "content": raw}, repair_message(found)]
        raw = await self._complete(messages)
        found, workflow = self._check(raw, retrieval, richness)
        if found or workflow is None:
            raise PlanError("the model's workflow is invalid after one repair: " + "; ".join(found), raw=raw)
        return workflow

    async def _complete(self, messages: list[Message]) -> str:
        return await self.model.complete(messages, schema=WORKFLOW_SCHEMA, max_tokens=self._max_tokens)

    @staticmethod
    def _check(raw: str, retrieval: Retrieval, richness: float) -> tuple[list[str], Workflow | None]:
        try:
            workflow = parse_workflow(raw, retrieval, richness)
        except PlanError as exc:
            return [str(exc)], None
        sources = {p.chunk.chunk_id for p in retrieval.passages}
        return problems(workflow, sources) + unsupported(workflow), workflow
