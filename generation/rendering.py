"""Workflows as people read them. Markdown here; Mermaid, Slack blocks and pictures join it."""

from __future__ import annotations

from core.types import Answer, Step

_MARK = {"process": "▸", "decision": "◆", "terminal": "■"}


def _step_line(step: Step) -> str:
    cites = ", ".join(dict.fromkeys(f"`{c.doc_id}`" for c in step.citations))
    line = f"{_MARK[step.type]} **{step.id}** {step.text}"
    if step.branches:
        line += f" — yes → {step.branches.yes}, no → {step.branches.no}"
    elif step.next:
        line += f" → {step.next}"
    return line + (f"  \n  _source: {cites}_" if cites else "")


def render_markdown(answer: Answer) -> str:
    """The answer as Markdown: the workflow with sources per step, or what was searched."""
    if answer.abstained or answer.workflow is None:
        searched = "\n".join(f"- `{doc}`" for doc in answer.searched) or "- (nothing)"
        return (
            f"**No runbook matches:** {answer.reason}.\n\nNearest documents searched:\n{searched}\n\n"
            "Escalate to the owning team or the incident commander."
        )
    steps = "\n".join(f"{n}. {_step_line(s)}" for n, s in enumerate(answer.workflow.steps, 1))
    return f"### {answer.workflow.title}\n\n{steps}\n\n_{answer.planner} planner, {answer.latency_ms:.0f} ms_"
