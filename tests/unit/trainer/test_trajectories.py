"""Executor trajectories → DPO pairs: a failed run ≺ a correction or a later success, same incident."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from bot.executor import Executor
from connectors.tools import Toolbox
from core.settings import ToolSettings
from core.types import Action, Chunk, Citation, Passage, Retrieval, Step, ToolResult, Workflow
from generation.prompts import planner_messages
from trainer.store import ExecutorRun, Feedback, Interaction, RecordStore
from trainer.trajectories import failed, trajectory_pairs

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def retrieval(doc: str = "db/PgConnections.md", query: str = "too many connections") -> Retrieval:
    chunk = Chunk(
        chunk_id=f"{doc}#1", doc_id=doc, ordinal=1, title="Pg", heading_path=("Diagnosis",), text="Count them."
    )
    return Retrieval(query=query, passages=(Passage(chunk=chunk, score=1.0),))


def workflow(*texts: str, doc: str = "db/PgConnections.md") -> Workflow:
    cite = (Citation(doc_id=doc, chunk_id=f"{doc}#1"),)
    steps = [Step(id=f"s{n}", type="process", text=t, next=f"s{n + 1}", citations=cite) for n, t in enumerate(texts, 1)]
    steps.append(
        Step(id=f"s{len(texts) + 1}", type="terminal", text="Escalate to the database on-call", citations=cite)
    )
    return Workflow(title="Pg", steps=tuple(steps))


def run(
    flow: Workflow, *, minutes: int, outcome: str | None = None, status: str = "ok", context: Retrieval | None = None
) -> ExecutorRun:
    event = {"kind": "probe", "step_id": "s1", "result": ToolResult(status=status, summary="…").model_dump(mode="json")}
    return ExecutorRun(
        started_at=T0 + dt.timedelta(minutes=minutes),
        query="too many connections",
        workflow=flow.model_dump(mode="json"),
        steps={"events": [event], "retrieval": (context or retrieval()).model_dump(mode="json")},
        outcome=outcome,
    )


def correction(flow: Workflow, *, context: Retrieval | None = None) -> tuple[Feedback, Interaction]:
    interaction = Interaction(id=7, query="q", context={"retrieval": (context or retrieval()).model_dump(mode="json")})
    return Feedback(corrected=flow.model_dump(mode="json"), updated_at=T0), interaction


BAD = workflow("Restart the database")
GOOD = workflow("Count connections per application", "Terminate idle sessions")


def steps_of(row: dict[str, Any], side: str) -> list[str]:
    return [s["text"] for s in json.loads(row[side][0]["content"])["steps"]]


def test_a_run_marked_not_resolved_is_paired_with_a_later_success() -> None:
    rows = trajectory_pairs(
        [run(BAD, minutes=0, outcome="not_resolved"), run(GOOD, minutes=30, outcome="resolved")], []
    )
    assert len(rows) == 1
    row = rows[0]
    assert set(row) == {"prompt", "chosen", "rejected"}
    assert row["prompt"] == planner_messages(retrieval())  # the serving prompt
    assert steps_of(row, "chosen")[:2] == ["Count connections per application", "Terminate idle sessions"]
    assert steps_of(row, "rejected")[0] == "Restart the database"
    assert json.loads(row["chosen"][0]["content"])["steps"][0]["sources"] == [1]  # cites the prompt's source


def test_a_failed_step_makes_a_failed_run_and_a_correction_is_preferred_to_a_later_run() -> None:
    corrected = workflow("Check pg_stat_activity for idle sessions")
    runs = [run(BAD, minutes=0, status="timeout"), run(GOOD, minutes=30, outcome="resolved")]
    rows = trajectory_pairs(runs, [correction(corrected)])
    assert [steps_of(r, "chosen")[0] for r in rows] == ["Check pg_stat_activity for idle sessions"]


def test_no_pair_without_a_failure_a_counterpart_or_the_same_incident() -> None:
    other = retrieval("k8s/CrashLoop.md")
    assert (
        trajectory_pairs([run(BAD, minutes=0, outcome="resolved"), run(GOOD, minutes=30, outcome="resolved")], []) == []
    )
    assert (
        trajectory_pairs([run(BAD, minutes=30, outcome="not_resolved"), run(GOOD, minutes=0, outcome="resolved")], [])
        == []
    )
    assert (
        trajectory_pairs(
            [run(BAD, minutes=0, outcome="not_resolved"), run(GOOD, minutes=30, outcome="resolved", context=other)], []
        )
        == []
    )
    # A "success" with a failed step is no success.
    assert (
        trajectory_pairs(
            [run(BAD, minutes=0, outcome="not_resolved"), run(GOOD, minutes=30, outcome="resolved", status="error")], []
        )
        == []
    )
    # The same workflow failing and then succeeding teaches nothing.
    assert (
        trajectory_pairs([run(BAD, minutes=0, outcome="not_resolved"), run(BAD, minutes=30, outcome="resolved")], [])
        == []
    )


async def test_a_stored_executor_run_becomes_a_pair(tmp_path: Path) -> None:
    records = RecordStore(f"sqlite:///{tmp_path}/records.sqlite")
    cfg = ToolSettings(commands=(("seq",),), command_env={"PATH": "/usr/bin:/bin"})
    toolbox = Toolbox(cfg)
    failing = Action(tool="command", args={"argv": ["seq", "not-a-number"]}, mode="read")
    bad = BAD.model_copy(update={"steps": (BAD.steps[0].model_copy(update={"action": failing}), BAD.steps[1])})
    report = await Executor(records, toolbox, cfg, None).run(
        bad, query="too many connections", user="U1", retrieval=retrieval()
    )
    stored = await records.transaction(lambda s: s.get(ExecutorRun, report.run_id))
    await records.aclose()
    assert stored is not None and failed(stored)
    rows = trajectory_pairs([stored], [correction(GOOD)])
    assert len(rows) == 1 and steps_of(rows[0], "rejected")[0] == "Restart the database"
