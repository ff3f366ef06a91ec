"""FlowXpert's Planner: question + retrieved chunks and nodes → a typed workflow, by a chat model.

Two reply formats, one Planner (training renders the same prompts and replies, ``trainer.datasets``):

* ``json``: JSON constrained by ``WORKFLOW_SCHEMA``, for backends that enforce a JSON schema (Ollama,
  OpenAI-compatible servers). An invalid workflow gets one repair round with the problems listed.
* ``lines``: numbered lines held by a GBNF grammar (``generation.lines``), for llama.cpp, where a small
  model on a CPU must answer in seconds: a compact prompt, a short reply, links repaired
  deterministically instead of a second round.

Each step cites sources by their number in the prompt. A workflow still invalid raises
``PlanError``, which tells the caller to fall back to the extractive planner. ``stats`` counts replies,
valid ones and repairs, for benchmarks and logs.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import cast

from pydantic import BaseModel, Field, ValidationError

from core.errors import PlanError
from core.types import Branches, Citation, Retrieval, Step, ToolSpec, Workflow
from generation.lines import MAX_LINES, lines_grammar, read_lines
from generation.ports import ChatModel, GrammarChatModel, Message
from generation.prompts import (
    WORKFLOW_SCHEMA,
    ReplyFormat,
    compact_context,
    planner_messages,
    repair_message,
    select_context,
)
from generation.validation import problems

MAX_TOKENS = 1200
# Eight lines of up to ~30 tokens each; a reply cut short loses only its unfinished last line.
LINES_MAX_TOKENS = 240
_TITLE = 100


def reply_format_for(backend: str) -> ReplyFormat:
    """The reply format a backend serves: lines under a grammar for llama.cpp, JSON for the others."""
    return "lines" if backend == "llamacpp" else "json"


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


def parse_lines(raw: str, retrieval: Retrieval, richness: float) -> tuple[Workflow, int]:
    """A lines reply as a ``Workflow`` (links repaired), and how many repairs it took."""
    reply = read_lines(raw, retrieval.query[:_TITLE], compact_context(retrieval, richness).passages)
    return reply.workflow, reply.links_repaired + reply.lines_dropped


class LlmPlanner:
    """Writes workflows with ``model`` in ``reply_format`` ("lines" needs a model that takes a grammar,
    ``GrammarChatModel``); ``richness`` (0–1) is how much retrieved context it sees, and ``tools`` the
    checks its steps may propose (in backticks; ``generation.actions`` maps them)."""

    def __init__(
        self,
        model: ChatModel,
        *,
        max_tokens: int = MAX_TOKENS,
        tools: Sequence[ToolSpec] = (),
        reply_format: ReplyFormat = "json",
    ) -> None:
        self.model = model
        self.reply_format = reply_format
        self.stats: Counter[str] = Counter()
        self._max_tokens = max_tokens if reply_format == "json" else min(max_tokens, LINES_MAX_TOKENS)
        self._tools = tuple(tools)

    async def plan(self, retrieval: Retrieval, *, richness: float = 1.0) -> Workflow:
        """A validated workflow; else ``PlanError``."""
        self.stats["replies"] += 1
        if self.reply_format == "lines":
            workflow = await self._plan_lines(retrieval, richness)
        else:
            workflow = await self._plan_json(retrieval, richness)
        self.stats["valid"] += 1
        return workflow

    async def _plan_lines(self, retrieval: Retrieval, richness: float) -> Workflow:
        messages = planner_messages(retrieval, richness, self._tools, reply_format="lines")
        grammar = lines_grammar(len(compact_context(retrieval, richness).passages), MAX_LINES)
        model = cast(GrammarChatModel, self.model)
        raw = await model.complete(messages, max_tokens=self._max_tokens, grammar=grammar)
        workflow, repairs = parse_lines(raw, retrieval, richness)
        if repairs:
            self.stats["repaired_replies"] += 1
            self.stats["repairs"] += repairs
        found = problems(workflow, {p.chunk.chunk_id for p in retrieval.passages}) + unsupported(workflow)
        if found:
            raise PlanError("the model's workflow is invalid: " + "; ".join(found), raw=raw)
        return workflow

    async def _plan_json(self, retrieval: Retrieval, richness: float) -> Workflow:
        """After at most one repair round."""
        messages: list[Message] = planner_messages(retrieval, richness, self._tools)
        raw = await self._complete(messages)
        found, workflow = self._check(raw, retrieval, richness)
        if not found and workflow is not None:
            return workflow
        self.stats["repair_rounds"] += 1
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
