"""``opsflow checks "QUERY"``: plan a workflow, run its read-only checks, take its branches, and list
its write steps as pending. The CLI never runs a write: its runs have no channel to approve in."""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from typing import Any

import click

from bot.app import build_executor, open_knowledge
from bot.cli_common import answer_json, load_settings, print_json, run
from bot.executor import RunReport
from core.settings import Settings
from core.types import Answer, RunEvent
from generation.actions import entities_of, shown

_MARK = {"process": "▸", "decision": "◆", "terminal": "■"}


@click.command("checks")
@click.argument("query")
@click.option("--json", "as_json", is_flag=True, help="Print the answer and the run as JSON.")
def checks_command(query: str, as_json: bool) -> None:
    """Answer QUERY with a workflow and run its read-only checks (writes are listed, never run)."""
    settings = load_settings()
    answer, report = run(_checks(settings, query))
    if as_json:
        print_json({**answer_json(answer), "run": None if report is None else report_json(report)})
    elif report is None:
        click.echo(f"No runbook matches: {answer.reason}")
    else:
        _print_report(answer, report)


async def _checks(settings: Settings, query: str) -> tuple[Answer, RunReport | None]:
    async with open_knowledge(settings) as kb:
        answer, retrieval = await kb.service.answer(query)
        if answer.workflow is None:
            return answer, None
        executor = build_executor(settings, kb)
        # Placeholders in the runbook's commands are filled from what the question names.
        known = entities_of(query)
        user = getpass.getuser()
        report = await executor.run(answer.workflow, query=query, user=user, retrieval=retrieval, known=known)
        return answer, report


def report_json(report: RunReport) -> dict[str, Any]:
    """A run as JSON: its state, events in order, and the writes waiting for an approval."""
    return {
        "id": report.run_id,
        "state": report.state,
        "events": [e.model_dump(mode="json", exclude_none=True) for e in report.events],
        "pending": [{"step_id": step_id, **action.model_dump(mode="json")} for step_id, action in report.pending],
    }


def _print_report(answer: Answer, report: RunReport) -> None:
    assert answer.workflow is not None
    types = {s.id: s.type for s in answer.workflow.steps}
    click.secho(f"{answer.workflow.title} — checks run #{report.run_id}", bold=True)
    previous: str | None = None
    for event in report.events:
        if line := _line(event, types, same_step=event.step_id is not None and event.step_id == previous):
            click.echo(line)
        previous = event.step_id
    for step_id, action in report.pending:
        click.secho(f"  ✋ {step_id} waits for an approval: {action.tool} {shown(action)}", fg="yellow")
    colour = {"finished": "green", "waiting_approval": "yellow"}.get(report.state, "red")
    click.secho(f"state: {report.state.replace('_', ' ')}", fg=colour)


def _line(event: RunEvent, types: Mapping[str, str], *, same_step: bool) -> str | None:
    """One event as text; a decision right after its own step's probe is not introduced twice."""
    mark = _MARK.get(types.get(event.step_id or "", ""), "·")
    head = "   " if same_step else f"  {mark} {event.step_id} {event.text}"
    match event.kind:
        case "probe" if event.result is not None and event.action is not None:
            result = event.result
            body = "\n".join(f"      {line}" for line in result.summary.splitlines()[:12])
            return f"{head}\n    {event.action.tool} {shown(event.action)} → {result.status} " + (
                f"({result.duration_ms:.0f} ms)\n{body}"
            )
        case "manual":
            return f"{head}  (by hand)"
        case "decision":
            return f"{head} → {event.branch} ({event.reason})"
        case "undecided":
            return f"{head} → undecided: {event.reason}"
        case "stopped":
            return f"  stopped: {event.text}"
    return None
