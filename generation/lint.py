"""The structure lint: what makes a workflow one an on-call engineer can follow, checked per step.

Complements ``validation`` (is it a well-formed graph?) with readability rules: every decision is
a yes/no question; no step is a caption, link, table row, note or past incident; the workflow ends
in a resolved or escalate terminal; no decision has both branches leading to the same place.
Used as a test over the dev split and by the learning curve's report. Pure.
"""

from __future__ import annotations

import re

from core.runbooks import is_escalation, role_of
from core.types import Workflow

_YES_NO = re.compile(
    r"^(?:is|are|was|were|has|have|had|can|could|will|would|should|does|do|did|must|may|might)\b.*\?$", re.I
)
_RESOLVED = re.compile(r"\bresolved\b|\bescalat", re.I)
_JUNK = {"reference": "a link or past incident", "caption": "a caption", "note": "a note", "description": "a label"}


def lint(workflow: Workflow) -> list[str]:
    """Readability problems of ``workflow``, one sentence each naming the step; empty when it is clean."""
    found: list[str] = []
    for step in workflow.steps:
        if step.type == "decision":
            if not _YES_NO.match(step.text.strip()):
                found.append(f"{step.id}: decision is not a yes/no question: {step.text[:80]!r}")
            if step.branches is not None and step.branches.yes == step.branches.no:
                found.append(f"{step.id}: both branches lead to {step.branches.yes}")
        role = role_of(step.text, "procedure", item=True)
        if role in _JUNK or ("|" in step.text and step.text.count("|") >= 2):
            found.append(f"{step.id}: step is {_JUNK.get(role, 'a table row')}: {step.text[:80]!r}")
    terminals = [s for s in workflow.steps if s.type == "terminal"]
    if not any(_RESOLVED.search(s.text) or is_escalation(s.text) for s in terminals):
        found.append("the workflow does not end in a resolved or escalate terminal")
    return found
