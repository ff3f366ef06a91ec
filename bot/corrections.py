"""Feedback that changes the next answer at once, before any training.

An engineer's **Edit** of an answer becomes the answer for that incident (its leading runbook), shown
as "corrected by @user on DATE"; a step flagged **wrong** is left out of that incident's next
workflows. Both hold until a runbook they were made against changes (its content hash differs), and
neither touches the feedback that training reads.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Protocol

from bot.records import BotRecords, Correction
from core.types import Answer, Branches, Retrieval, Step, Workflow
from trainer.store import Interaction


class DocumentHashes(Protocol):
    """What corrections need of the chunk index (``retrieval.ports.ChunkIndex``)."""

    async def document_hashes(self, source: str | None = None) -> dict[str, str]: ...


def incident_of(retrieval: dict[str, Any] | Retrieval | None) -> str | None:
    """The incident an answer is about: its leading runbook, or None when nothing was retrieved."""
    if isinstance(retrieval, dict):
        passages = retrieval.get("passages") or []
        return str(passages[0]["chunk"]["doc_id"]) if passages else None
    return retrieval.passages[0].chunk.doc_id if retrieval is not None and retrieval.passages else None


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def without_steps(workflow: Workflow, wrong: Collection[str]) -> Workflow:
    """``workflow`` without its process steps whose text (case and spacing aside) is in ``wrong``;
    whatever led to a removed step leads to the step after it. Decisions and terminals stay."""
    keys = {_key(t) for t in wrong}
    skip = {s.id: s.next for s in workflow.steps if s.type == "process" and s.next and _key(s.text) in keys}
    if not skip:
        return workflow

    def target(step_id: str | None) -> str | None:
        seen: set[str] = set()
        while step_id in skip and step_id not in seen:
            seen.add(step_id)
            step_id = skip[step_id]
        return step_id

    steps = []
    for step in workflow.steps:
        if step.id in skip:
            continue
        update: dict[str, Any] = {"next": target(step.next)}
        if step.branches is not None:
            update["branches"] = Branches(yes=target(step.branches.yes) or "", no=target(step.branches.no) or "")
        steps.append(step.model_copy(update=update))
    start = target(workflow.steps[0].id)
    steps.sort(key=lambda s: s.id != start)  # the first step is the start; the rest keep their order
    return workflow.model_copy(update={"steps": tuple(steps)})


class Corrections:
    """Records Edits and wrong-step flags, and applies them to new answers."""

    def __init__(self, records: BotRecords, index: DocumentHashes) -> None:
        self._records = records
        self._index = index

    async def record_edit(self, interaction: Interaction, user: str, workflow: Workflow) -> Correction | None:
        """Keep ``workflow`` as the answer for the incident of ``interaction``; None when it has none."""
        return await self._add(interaction, user, "edit", workflow=workflow.model_dump(mode="json"))

    async def record_wrong_step(self, interaction: Interaction, user: str, step_id: str) -> Correction | None:
        """Leave the step ``step_id`` of the answer out of the incident's next workflows."""
        workflow = Answer.model_validate(interaction.answer).workflow
        step = next((s for s in workflow.steps if s.id == step_id), None) if workflow else None
        if step is None:
            return None
        return await self._add(interaction, user, "wrong_step", step_text=step.text)

    async def _add(self, interaction: Interaction, user: str, kind: str, **values: Any) -> Correction | None:
        incident = incident_of((interaction.context or {}).get("retrieval"))
        if incident is None:
            return None
        answer = Answer.model_validate(interaction.answer)
        cited = {incident, *(c.doc_id for c in answer.sources)}
        if (workflow := values.get("workflow")) is not None:
            cited |= {c.doc_id for s in Workflow.model_validate(workflow).steps for c in s.citations}
        hashes = await self._index.document_hashes()
        correction = Correction(
            incident=incident,
            interaction_id=interaction.id,
            user=user,
            kind=kind,
            doc_hashes={d: hashes.get(d) for d in sorted(cited)},
            **values,
        )
        return await self._records.add_correction(correction)

    async def apply(self, answer: Answer, retrieval: Retrieval) -> Answer:
        """``answer`` with its incident's standing corrections applied (unchanged when there are none)."""
        incident = incident_of(retrieval)
        if answer.abstained or answer.workflow is None or incident is None:
            return answer
        rows = await self._records.corrections(incident)
        if not rows:
            return answer
        hashes = await self._index.document_hashes()
        standing = [r for r in rows if all(hashes.get(d) == h for d, h in r.doc_hashes.items())]
        edit = next((r for r in standing if r.kind == "edit" and r.workflow), None)
        workflow = Workflow.model_validate(edit.workflow) if edit is not None else answer.workflow
        workflow = without_steps(workflow, [r.step_text for r in standing if r.kind == "wrong_step"])
        if edit is None and workflow == answer.workflow:
            return answer
        update: dict[str, Any] = {"workflow": workflow, "sources": _sources(workflow.steps)}
        if edit is not None:
            update["reason"] = f"corrected by <@{edit.user}> on {edit.at:%Y-%m-%d}"
        return answer.model_copy(update=update)


def _sources(steps: Collection[Step]) -> tuple[Any, ...]:
    return tuple(dict.fromkeys(c for s in steps for c in s.citations))
