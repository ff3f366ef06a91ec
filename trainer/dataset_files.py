"""Training data in and out: judged answers read from the records, knowledge-base questions, JSONL files.

``datasets.build`` does the selecting; this module does the I/O around it. The written layout is
what ``trainer.jobs.JobConfig.dataset_dir`` expects: ``<out>/<dataset>/train.jsonl`` (and
``eval.jsonl``) for each of sft, dpo, kto, grpo and scorer, plus ``heldout_cases.jsonl`` (the gate's
held-back answers, ``opsflow eval`` format) and ``manifest.json`` (snapshot hash and sizes).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.types import IncidentNode, Retrieval, normalise_name
from trainer.datasets import Datasets, Judged, judged
from trainer.store import ExecutorRun, Feedback, Interaction, RecordStore

MANIFEST = "manifest.json"
HELDOUT = "heldout_cases.jsonl"
_FIRST_SENTENCE = re.compile(r"^(.+?[.!?])(?:\s|$)")

Retrieve = Callable[[str], Awaitable[Retrieval]]


async def load_judged(records: RecordStore) -> tuple[list[Judged], int]:
    """Every answer somebody judged, oldest first, and how many were left out (context not kept whole)."""

    def read(session: Session) -> list[tuple[Interaction, list[Feedback]]]:
        query = (
            select(Feedback, Interaction)
            .join(Interaction, Feedback.interaction_id == Interaction.id)
            .order_by(Interaction.id, Feedback.id)
        )
        grouped: dict[int, tuple[Interaction, list[Feedback]]] = {}
        for feedback, interaction in session.execute(query):
            grouped.setdefault(interaction.id, (interaction, []))[1].append(feedback)
        return list(grouped.values())

    rows = await records.transaction(read)
    found = [judged(interaction, feedback) for interaction, feedback in rows]
    kept = [j for j in found if j is not None]
    return kept, len(found) - len(kept)


async def load_trajectories(records: RecordStore) -> tuple[list[ExecutorRun], list[tuple[Feedback, Interaction]]]:
    """Finished executor runs and every correction, oldest first: ``trainer.trajectories``' input."""

    def read(session: Session) -> tuple[list[ExecutorRun], list[tuple[Feedback, Interaction]]]:
        runs = session.scalars(select(ExecutorRun).where(ExecutorRun.state == "finished").order_by(ExecutorRun.id))
        query = select(Feedback, Interaction).join(Interaction, Feedback.interaction_id == Interaction.id)
        # Filtered here: a JSON column may hold JSON null rather than SQL NULL.
        return list(runs), [(f, i) for f, i in session.execute(query.order_by(Feedback.id)) if f.corrected]

    return await records.transaction(read)


def knowledge_questions(candidates: Sequence[IncidentNode], limit: int) -> list[tuple[str, str]]:
    """(question, runbook) pairs an engineer might ask about each incident the knowledge base describes:
    by its name, and by the first sentence of its description. Sorted by runbook, at most ``limit``."""
    seen: dict[tuple[str, str], IncidentNode] = {}
    for node in candidates:
        for doc_id in node.doc_ids[:1]:
            seen.setdefault((doc_id, normalise_name(node.name)), node)
    questions = []
    for (doc_id, _), node in sorted(seen.items()):
        questions.append((f"How do I handle {node.name}?", doc_id))
        if match := _FIRST_SENTENCE.match(" ".join(node.description.split())):
            questions.append((f"{match.group(1)} What should I check?", doc_id))
    return questions[:limit]


async def knowledge_retrievals(questions: Sequence[tuple[str, str]], retrieve: Retrieve) -> list[Retrieval]:
    """The retrieval for each question whose leading runbook is the one it was built from; questions the
    retriever sends elsewhere are left out rather than teach a workflow from the wrong runbook."""
    found = []
    for question, doc_id in questions:
        retrieval = await retrieve(question)
        if retrieval.passages and retrieval.passages[0].chunk.doc_id == doc_id:
            found.append(retrieval)
    return found


async def write_datasets(datasets: Datasets, out: Path, *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write every dataset under ``out`` (replacing what was there); returns the manifest."""
    manifest = {"snapshot": datasets.snapshot, "sizes": datasets.sizes(), "heldout_cases": len(datasets.heldout_cases)}
    manifest |= extra or {}

    def write() -> None:
        for name in datasets.train:
            _write_jsonl(out / name / "train.jsonl", datasets.train[name])
            _write_jsonl(out / name / "eval.jsonl", datasets.eval[name])
        _write_jsonl(out / HELDOUT, datasets.heldout_cases)
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    await asyncio.to_thread(write)
    return manifest


def _write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    partial.replace(path)


def dataset_name(method: str, target: str) -> str:
    """The dataset a job trains on: the scorer's DPO pairs, or the planner's data for the method."""
    return "scorer" if target == "scorer" else method
