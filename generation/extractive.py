"""The extractive planner: a workflow built from the leading runbook without any LLM.

Baseline, fallback, and default where no capable model is configured. It reads the leading
document's diagnosis and mitigation sections in order, turns each bullet or sentence into a step
(conditions such as "If …" or "Check whether …" become decisions), ends with a terminal step, and
cites the chunk every step came from.
"""

from __future__ import annotations

import re

from core.runbooks import section_role, steps_of
from core.types import Branches, Chunk, Citation, Retrieval, Step, Workflow

MAX_STEPS = 8
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_CODE = re.compile(r"`([^`]*)`")
_CONDITION = re.compile(r"^(if|when|in case|check (?:whether|if))\b", re.IGNORECASE)
_NOT_A_STEP = re.compile(r"^(see|for more|more information|note:|refer to|this alert|the alert)\b", re.IGNORECASE)


def clean(text: str) -> str:
    """A step as a person would say it: links as their text, code spans unquoted, no emphasis marks."""
    text = _CODE.sub(r"\1", _LINK.sub(r"\1", text)).replace("**", "")
    text = " ".join(text.split()).rstrip(":")
    return text[:1].upper() + text[1:]


def _is_prose(text: str) -> bool:
    """Sentences, not command lines: mostly plain words."""
    words = text.split()
    return sum(w.strip(".,;:()'\"").isalpha() for w in words) >= 0.6 * len(words)


def _candidates(chunks: list[Chunk]) -> list[tuple[str, Chunk]]:
    """(step text, source chunk) for every actionable sentence of the diagnosis and mitigation sections."""
    found: list[tuple[str, Chunk]] = []
    for chunk in chunks:
        if section_role(chunk.heading_path) != "mitigation":
            continue
        for sentence in steps_of(chunk.text):
            text = clean(sentence)
            if len(text.split()) >= 3 and _is_prose(text) and not _NOT_A_STEP.match(text):
                found.append((text, chunk))
    return found


def _select(candidates: list[tuple[str, Chunk]], limit: int) -> list[tuple[str, Chunk]]:
    """At most ``limit`` steps, spread over the runbook so diagnosis and mitigation both appear."""
    if len(candidates) <= limit:
        return candidates
    last = len(candidates) - 1
    picks = sorted({round(i * last / (limit - 1)) for i in range(limit)})
    return [candidates[i] for i in picks]


def plan_extractive(retrieval: Retrieval, *, max_steps: int = MAX_STEPS) -> Workflow | None:
    """A workflow from the leading document of ``retrieval``, or None when it holds no steps."""
    if not retrieval.passages:
        return None
    lead = retrieval.passages[0].chunk
    chunks = sorted((p.chunk for p in retrieval.passages if p.chunk.doc_id == lead.doc_id), key=lambda c: c.ordinal)
    chosen = _select(_candidates(chunks), max_steps)
    if not chosen:
        return None
    node_id = next((h.node.node_id for h in retrieval.nodes if lead.doc_id in h.node.doc_ids), None)
    steps: list[Step] = []
    for n, (text, chunk) in enumerate(chosen):
        this, following = f"s{n + 1}", f"s{n + 2}"
        citation = Citation(doc_id=chunk.doc_id, chunk_id=chunk.chunk_id, node_id=node_id)
        if n == len(chosen) - 1:
            steps.append(Step(id=this, type="terminal", text=text, citations=(citation,)))
        elif _CONDITION.match(text):
            # Yes: do what the sentence says (the next step builds on it); no: skip past it.
            skip = f"s{min(n + 3, len(chosen))}"
            branches = Branches(yes=following, no=skip)
            steps.append(Step(id=this, type="decision", text=text, branches=branches, citations=(citation,)))
        else:
            steps.append(Step(id=this, type="process", text=text, next=following, citations=(citation,)))
    return Workflow(title=lead.title, steps=tuple(steps))
