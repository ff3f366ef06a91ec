"""A workflow as lines a person can correct in a Slack modal, and back.

One step a line, numbered by position (the number is the step's id)::

    1. Check the pod status with kubectl get pods
    2? Is the pod in CrashLoopBackOff? yes: 3 no: 4
    3. Read the previous container's logs
    4= Escalate to the owning team

``.`` is a process step (it leads to the next line), ``?`` a decision (with ``yes: N no: M`` at the
end), ``=`` a terminal step. A step keeps the sources of the original step it came from (same number),
so a correction stays grounded where the engineer left the text alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from core.errors import PlanError
from core.types import Branches, Step, Workflow

_LINE = re.compile(r"^\s*(\d+)\s*([.?=])\s*(.*?)\s*$")
_BRANCHES = re.compile(r"\s*\byes\s*:\s*(\d+)\s*,?\s*\bno\s*:\s*(\d+)\s*$", re.IGNORECASE)
_MARK = {"process": ".", "decision": "?", "terminal": "="}


def to_lines(workflow: Workflow) -> str:
    """The workflow in the editable form, numbered 1… in reading order."""
    number = {step.id: str(i) for i, step in enumerate(workflow.steps, 1)}
    lines = []
    for i, step in enumerate(workflow.steps, 1):
        text = " ".join(step.text.split())
        if step.type == "decision" and step.branches:
            text += f" yes: {number.get(step.branches.yes, '?')} no: {number.get(step.branches.no, '?')}"
        lines.append(f"{i}{_MARK[step.type]} {text}")
    return "\n".join(lines)


def from_lines(text: str, original: Workflow) -> Workflow:
    """The corrected workflow; raises PlanError naming the line that cannot be read."""
    rows = [line for line in text.splitlines() if line.strip()]
    if not rows:
        raise PlanError("the workflow needs at least one step")
    parsed: list[tuple[str, str, str]] = []
    for n, line in enumerate(rows, 1):
        match = _LINE.match(line)
        if match is None:
            raise PlanError(f"line {n}: start with the step number and . ? or = (e.g. '{n}. Check …')")
        parsed.append(match.groups())  # type: ignore[arg-type]
    ids = [number for number, _, _ in parsed]
    if len(set(ids)) != len(ids):
        raise PlanError("two lines have the same step number")
    sources = {str(i): step.citations for i, step in enumerate(original.steps, 1)}
    steps = []
    for n, (number, mark, body) in enumerate(parsed):
        following = ids[n + 1] if n + 1 < len(ids) else None
        if mark == "?":
            branches = _BRANCHES.search(body)
            if branches is None:
                raise PlanError(f"step {number}: a decision ends with 'yes: N no: M'")
            yes, no = branches.groups()
            for target in (yes, no):
                if target not in ids:
                    raise PlanError(f"step {number}: there is no step {target}")
            body = body[: branches.start()].strip()
            step = Step(id=number, type="decision", text=body, branches=Branches(yes=yes, no=no))
        elif mark == "=" or following is None:
            step = Step(id=number, type="terminal", text=body)
        else:
            step = Step(id=number, type="process", text=body, next=following)
        if not step.text:
            raise PlanError(f"step {number} has no text")
        steps.append(step.model_copy(update={"citations": sources.get(number, ())}))
    return Workflow(title=original.title, steps=tuple(steps))


def chained(title: str, steps: Sequence[Step]) -> Workflow:
    """``steps`` as one chain in the given order, numbered 1…: each step leads to the next, a decision's
    *no* to the last step, and the last step ends; types, texts and citations are kept. This is how a
    list of gold steps (which has no links) or a reordered copy of a workflow becomes a workflow."""
    if not steps:
        raise PlanError("the workflow needs at least one step")
    last = str(len(steps))
    chain = []
    for i, step in enumerate(steps, 1):
        number, following = str(i), str(i + 1)
        base = {"id": number, "text": step.text, "citations": step.citations}
        if number == last:
            chain.append(Step(type="terminal", **base))
        elif step.type == "decision":
            chain.append(Step(type="decision", branches=Branches(yes=following, no=last), **base))
        else:
            chain.append(Step(type="process", next=following, **base))
    return Workflow(title=title, steps=tuple(chain))
