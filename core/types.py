"""Domain types shared by every package: frozen, validated, free of I/O.

Documents become sections, sections become chunks, chunks yield incident nodes; a query
returns a ``Retrieval`` (passages and nodes with their provenance).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

DocumentKind = Literal["markdown", "html", "text", "pdf"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Section(_Frozen):
    """A run of text under one heading path, in document order."""

    heading_path: tuple[str, ...] = ()
    text: str


class SourceDocument(_Frozen):
    """A parsed operation document, ready to chunk."""

    doc_id: str = Field(description="Path relative to the ingest root, with '/' separators.")
    source: str = Field(description="The ingest root it came from (documents gone from it are removed).")
    title: str
    kind: DocumentKind
    content_hash: str = Field(description="sha256 of the raw bytes; unchanged hash = skip on re-ingest.")
    sections: tuple[Section, ...]


class Chunk(_Frozen):
    """A retrievable piece of a document; ``heading_path`` starts below the title."""

    chunk_id: str
    doc_id: str
    ordinal: int
    title: str
    heading_path: tuple[str, ...] = ()
    text: str

    @property
    def context(self) -> str:
        """Title and heading path, the way the chunk is shown and embedded."""
        return " > ".join((self.title, *self.heading_path))


def normalise_name(name: str) -> str:
    """Canonical key of an incident or alert name: CamelCase split, lower case, alnum words."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name)
    return " ".join(re.findall(r"[a-z0-9]+", spaced.lower()))


class IncidentNode(_Frozen):
    """FlowXpert's incident-aware node: five fields plus aliases, tags and provenance."""

    name: str = Field(description="Incident Name")
    description: str = Field("", description="Failure Description")
    mitigation: tuple[str, ...] = Field((), description="Mitigation Steps")
    typical_cases: tuple[str, ...] = Field((), description="Typical Cases")
    note: str = Field("", description="Additional Note")
    aliases: tuple[str, ...] = Field((), description="Alert names and other names of the incident.")
    components: tuple[str, ...] = ()
    domain: str = ""
    chunk_ids: tuple[str, ...] = ()
    doc_ids: tuple[str, ...] = ()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def node_id(self) -> str:
        return normalise_name(self.name).replace(" ", "-") or "unnamed"

    @model_validator(mode="before")
    @classmethod
    def _computed_id_is_not_input(cls, data: Any) -> Any:
        # model_dump() writes node_id; a stored dump must read back (extra fields are forbidden).
        if isinstance(data, dict) and "node_id" in data:
            return {k: v for k, v in data.items() if k != "node_id"}
        return data

    def lookup_keys(self) -> set[str]:
        """Every normalised name this node answers to."""
        return {k for k in (normalise_name(n) for n in (self.name, *self.aliases)) if k}


RelationKind = Literal["related"]


class Relation(_Frozen):
    """An undirected incident ↔ incident edge, stored with ``src < dst``."""

    src: str
    dst: str
    kind: RelationKind = "related"
    reason: str = ""


class Passage(_Frozen):
    """A retrieved chunk with its fused score, and its rank and raw score in each ranking that found it."""

    chunk: Chunk
    score: float
    ranks: dict[str, int] = Field(default_factory=dict)
    raw_scores: dict[str, float] = Field(default_factory=dict, description="BM25 score, cosine similarity…")


NodeVia = Literal["named", "chunk", "neighbour"]


class NodeHit(_Frozen):
    """A retrieved incident node: named in the query, attached to a top chunk, or a neighbour."""

    node: IncidentNode
    score: float
    via: NodeVia


class Retrieval(_Frozen):
    """Everything the planner gets for one query, with what went wrong on the way."""

    query: str
    passages: tuple[Passage, ...]
    nodes: tuple[NodeHit, ...] = ()
    degraded: tuple[str, ...] = Field((), description="Human-readable notes on rankings that failed.")
    took_ms: float = 0.0

    def doc_ids(self) -> list[str]:
        """Documents in rank order of their best passage."""
        return list(dict.fromkeys(p.chunk.doc_id for p in self.passages))

    def best(self, ranking: str, doc_id: str | None = None) -> float:
        """The highest raw score a passage (of ``doc_id``, if given) got from ``ranking``; 0 if none."""
        scores = (p.raw_scores.get(ranking, 0.0) for p in self.passages if doc_id in (None, p.chunk.doc_id))
        return max(scores, default=0.0)


StepType = Literal["process", "decision", "terminal"]


class Citation(_Frozen):
    """Where a step came from: a retrieved chunk, and the incident node if one was used."""

    doc_id: str
    chunk_id: str
    node_id: str | None = None


class Branches(_Frozen):
    """The step ids a decision leads to."""

    yes: str
    no: str


class Action(_Frozen):
    """A tool call a step proposes; ``write`` actions only ever run after an approval."""

    tool: str
    args: dict[str, Any] = Field(default_factory=dict)
    mode: Literal["read", "write"]
    missing: tuple[str, ...] = Field(
        (), description="Placeholders no known value filled (canonical names, e.g. 'namespace'): it must not run."
    )


class Step(_Frozen):
    """One workflow step: process steps go on to ``next``, decisions branch, terminals end."""

    id: str
    type: StepType
    text: str
    next: str | None = None
    branches: Branches | None = None
    citations: tuple[Citation, ...] = ()
    action: Action | None = None
    notes: tuple[str, ...] = Field((), description="The runbook's notes and warnings on this step, shown with it.")


class Workflow(_Frozen):
    """A troubleshooting workflow; ``steps`` are in reading order and the first one is the start."""

    title: str
    steps: tuple[Step, ...]
    see_also: tuple[str, ...] = Field((), description="Links and past incidents the runbook cites, as Markdown.")


class Answer(_Frozen):
    """What opsflow answers to a question: a workflow, or an abstention saying what was searched."""

    query: str
    abstained: bool
    workflow: Workflow | None = None
    reason: str = Field("", description="Why it abstained or fell back, in words for the engineer.")
    sources: tuple[Citation, ...] = ()
    searched: tuple[str, ...] = Field((), description="The documents looked at, best first.")
    degraded: tuple[str, ...] = ()
    planner: str
    model: str
    confidence: float | None = Field(None, description="The Scorer's verdict on the workflow, 0–1.")
    latency_ms: float = 0.0


AlertSource = Literal["alertmanager", "grafana", "pagerduty", "generic"]


class Alert(_Frozen):
    """One alert from any source, normalised: what the bot threads, routes and answers."""

    source: AlertSource
    fingerprint: str = Field(description="Identifies this alert within its source (same alert, same fingerprint).")
    group_key: str = Field(description="Alerts with the same key share one Slack thread.")
    status: Literal["firing", "resolved"]
    name: str = Field(description="The alert's name, e.g. Alertmanager's alertname label.")
    severity: str = ""
    summary: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None
    url: str = Field("", description="Where the source shows it (generator URL, incident link).")

    @property
    def question(self) -> str:
        """What the bot asks its knowledge base about this alert."""
        return " ".join(part for part in (self.name, self.summary) if part)


ToolMode = Literal["read", "write"]
ToolStatus = Literal["ok", "error", "no_data", "refused", "timeout"]


class ToolSpec(_Frozen):
    """A tool a workflow step may call, as the deployment configured it; its ``mode`` is the only
    source of truth for whether a call changes the system (text in a document never decides it)."""

    name: str
    description: str
    mode: ToolMode
    args: dict[str, Any] = Field(description="JSON schema of the arguments; allowlists are part of it.")

    @functools.cached_property
    def validator(self) -> Draft202012Validator:
        """The schema's validator, built once: building it costs more than most validations."""
        return Draft202012Validator(self.args)

    def accepts(self, args: dict[str, Any]) -> bool:
        """Whether ``args`` are valid for this tool; stops at the first error, unlike ``problem``."""
        return bool(self.validator.is_valid(args))

    def problem(self, args: dict[str, Any]) -> str | None:
        """What is wrong with ``args`` for this tool, in words; None when they are valid."""
        error = best_match(self.validator.iter_errors(args))
        if error is None:
            return None
        where = "/".join(map(str, error.path)) or "arguments"
        # An allowlist is an anyOf of prefixes: its description says what is allowed, the raw message does not.
        schema = error.schema if isinstance(error.schema, dict) else {}
        allowed = schema.get("description") if error.validator == "anyOf" else None
        return f"{where}: " + (f"not allowed ({allowed})" if allowed else error.message)[:300]


class ToolResult(_Frozen):
    """What one tool call came to. Failures are values: ``error`` (the call failed), ``no_data`` (it
    worked and found nothing), ``refused`` (not allowed or bad arguments), ``timeout``."""

    status: ToolStatus
    summary: str = Field("", description="Condensed and redacted: what people and models are shown.")
    data: dict[str, Any] | None = Field(None, description="A small structured value, e.g. the numbers a rule reads.")
    duration_ms: float = 0.0


RunEventKind = Literal[
    "started", "probe", "manual", "decision", "undecided", "approval_requested", "approved", "rejected",
    "write", "finished", "stopped", "outcome",
]  # fmt: skip


class RunEvent(_Frozen):
    """One thing that happened in a run of a workflow's checks (a trajectory step), in order."""

    kind: RunEventKind
    step_id: str | None = None
    text: str = Field("", description="The step's text, or what happened, in words (redacted).")
    action: Action | None = None
    result: ToolResult | None = None
    branch: Literal["yes", "no"] | None = None
    reason: str = ""
    user: str = ""
    at: dt.datetime
