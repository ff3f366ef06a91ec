"""Executor runs as training signal (AOI): a failed run ≺ what worked for the same incident.

Pure functions over stored records. A run failed when the engineer marked it not resolved or one
of its steps failed (a check or a write that errored, timed out or was refused). Its preferred
counterpart is an engineer's correction of a workflow for the same incident, else the first later
run that resolved it without a failed step. "The same incident" is ``question_key``: the same
leading runbook. The prompt is the serving planner prompt rebuilt from the failed run's retrieval
(kept with the run); runs without one are left out, since a prompt without sources teaches nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from core.types import Retrieval, Workflow
from trainer.datasets import Preference, dpo_row, question_key
from trainer.store import ExecutorRun, Feedback, Interaction

FAILED_STATUSES = ("error", "timeout", "refused")


def failed(run: ExecutorRun) -> bool:
    """Marked not resolved, or a step's call failed."""
    return run.outcome == "not_resolved" or any(
        (e.get("result") or {}).get("status") in FAILED_STATUSES for e in run.steps.get("events", [])
    )


def succeeded(run: ExecutorRun) -> bool:
    """Marked resolved, with no failed step."""
    return run.outcome == "resolved" and not failed(run)


def trajectory_preferences(
    runs: Sequence[ExecutorRun], corrections: Sequence[tuple[Feedback, Interaction]]
) -> list[Preference]:
    """One preference per failed run that has a correction or a later success for its incident."""
    fixed: dict[str, Workflow] = {}  # the latest correction per incident
    for feedback, interaction in sorted(corrections, key=lambda pair: pair[0].updated_at):
        retrieval, workflow = _retrieval(interaction.context.get("retrieval")), _workflow(feedback.corrected)
        if retrieval is not None and workflow is not None:
            fixed[question_key(retrieval)] = workflow
    keyed = [(run, r) for run in runs if (r := _retrieval(run.steps.get("retrieval"))) is not None]
    preferences = []
    for run, retrieval in keyed:
        rejected = _workflow(run.workflow)
        if not failed(run) or rejected is None:
            continue
        key = question_key(retrieval)
        later = sorted(
            (other for other, r in keyed if question_key(r) == key and other.started_at > run.started_at),
            key=lambda other: other.started_at,
        )
        chosen = fixed.get(key) or next((_workflow(o.workflow) for o in later if succeeded(o)), None)
        if chosen is not None:
            preferences.append(Preference(retrieval, chosen, rejected, "execution"))
    return preferences


def trajectory_pairs(
    runs: Sequence[ExecutorRun], corrections: Sequence[tuple[Feedback, Interaction]]
) -> list[dict[str, Any]]:
    """The preferences as trl DPO rows ``{prompt, chosen, rejected}`` (the planner's own prompt and
    reply format); pairs whose two workflows read the same are dropped."""
    return [row for p in trajectory_preferences(runs, corrections) if (row := dpo_row(p)) is not None]


def _retrieval(value: Any) -> Retrieval | None:
    try:
        return None if value is None else Retrieval.model_validate(value)
    except ValidationError:
        return None


def _workflow(value: Any) -> Workflow | None:
    try:
        return None if not value else Workflow.model_validate(value)
    except ValidationError:
        return None
