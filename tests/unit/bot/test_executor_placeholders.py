"""The executor never runs a check whose placeholder no known value fills; given the value, it does.

Real parts: the record store (SQLite), the toolbox running a real process (``touch``, allowlisted
for the test, so that a run leaves a file behind)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.executor import Executor
from connectors.tools import Toolbox
from core.settings import ToolSettings
from core.types import Action, Chunk, Citation, Passage, Retrieval, Step, Workflow
from trainer.store import RecordStore

CITE = (Citation(doc_id="rb.md", chunk_id="rb.md#0"),)


def retrieval(command: str) -> Retrieval:
    text = f"- Mark the namespace as checked: `{command}`\n- Tell the team."
    chunk = Chunk(chunk_id="rb.md#0", doc_id="rb.md", ordinal=0, title="Rb", heading_path=("Diagnosis",), text=text)
    return Retrieval(query="q", passages=(Passage(chunk=chunk, score=1.0),))


def marks(folder: Path) -> list[str]:
    """The files the check left in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("checked"))


WORKFLOW = Workflow(
    title="Rb",
    steps=(
        Step(id="s1", type="process", text="Mark the namespace as checked", next="s2", citations=CITE),
        Step(id="s2", type="terminal", text="Tell the team", citations=CITE),
    ),
)


@pytest.mark.parametrize(("known", "runs"), [({}, False), ({"pod": "x-1"}, False), ({"NAMESPACE": "shop"}, True)])
async def test_a_check_runs_only_once_its_placeholders_are_filled(
    tmp_path: Path, known: dict[str, str], runs: bool
) -> None:
    cfg = ToolSettings(commands=(("touch",),), write_commands=())
    records = RecordStore(f"sqlite:///{tmp_path}/records.sqlite")
    executor = Executor(records, Toolbox(cfg), cfg, None)
    marker = tmp_path / "checked"
    try:
        report = await executor.run(
            WORKFLOW, query="q", user="U1", retrieval=retrieval(f"touch {marker}-<namespace>"), known=known
        )
    finally:
        await records.aclose()
    probe = next(e for e in report.events if e.kind == "probe")
    assert probe.step_id == "s1" and probe.action is not None and probe.result is not None
    assert marks(tmp_path) == (["checked-shop"] if runs else [])
    if runs:
        assert probe.result.status == "ok" and probe.action.args["argv"] == ["touch", f"{marker}-shop"]
    else:
        assert probe.result.status == "refused" and "needs: namespace" in probe.result.summary
        assert probe.action.missing == ("namespace",) and probe.action.args["argv"][-1].endswith("<namespace>")
    assert report.state == "finished"


async def test_the_toolbox_refuses_an_action_missing_a_value(tmp_path: Path) -> None:
    cfg = ToolSettings(commands=(("touch",),), write_commands=())
    action = Action(tool="command", args={"argv": ["touch", str(tmp_path / "x")]}, mode="read", missing=("pod",))
    result = await Toolbox(cfg).call(action)
    assert result.status == "refused" and result.summary == "not run, needs: pod"
    assert not (tmp_path / "x").exists()


async def test_a_write_missing_a_value_asks_for_no_approval(tmp_path: Path) -> None:
    cfg = ToolSettings(commands=(), write_commands=(("touch",),), approvers={"C1": ("U_LEAD",)})
    records = RecordStore(f"sqlite:///{tmp_path}/records.sqlite")
    executor = Executor(records, Toolbox(cfg), cfg, None)
    command = f"touch {tmp_path / 'checked'}-<namespace>"
    try:
        report = await executor.run(WORKFLOW, query="q", user="U1", channel="C1", retrieval=retrieval(command))
    finally:
        await records.aclose()
    assert report.state == "finished" and report.pending == ()
    assert not any(e.kind == "approval_requested" for e in report.events)
    probe = next(e for e in report.events if e.kind == "probe")
    assert probe.result is not None and probe.result.status == "refused" and "needs: namespace" in probe.result.summary
    assert marks(tmp_path) == []
