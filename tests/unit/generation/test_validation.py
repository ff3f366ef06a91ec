from __future__ import annotations

import pytest

from core.errors import PlanError
from core.types import Branches, Citation, Step, Workflow
from generation.validation import problems, validate

CITE = (Citation(doc_id="a.md", chunk_id="a.md#0"),)


def wf(*steps: Step) -> Workflow:
    return Workflow(title="t", steps=steps)


def process(i: str, nxt: str) -> Step:
    return Step(id=i, type="process", text=f"do {i}", next=nxt, citations=CITE)


def decision(i: str, yes: str, no: str) -> Step:
    return Step(id=i, type="decision", text=f"{i}?", branches=Branches(yes=yes, no=no), citations=CITE)


def terminal(i: str) -> Step:
    return Step(id=i, type="terminal", text="done", citations=CITE)


def test_a_branching_workflow_is_valid() -> None:
    flow = wf(process("s1", "s2"), decision("s2", "s3", "s4"), process("s3", "s4"), terminal("s4"))
    assert validate(flow, {"a.md#0"}) is flow


@pytest.mark.parametrize(
    ("flow", "problem"),
    [
        (wf(), "no steps"),
        (wf(process("s1", "s9"), terminal("s2")), "s1 leads to unknown step s9"),
        (wf(process("s1", "s2"), terminal("s2"), terminal("s3")), "one start"),
        (wf(process("s1", "s2"), process("s2", "s1")), "no terminal step is reachable"),
        (wf(Step(id="s1", type="decision", text="?", next="s2"), terminal("s2")), "s1 is a decision"),
        (wf(Step(id="s1", type="process", text="x"), terminal("s2")), "s1 is a process step"),
        (wf(Step(id="s1", type="terminal", text="x", next="s2"), terminal("s2")), "s1 is a terminal step"),
        (wf(process("s1", "s2"), process("s1", "s2"), terminal("s2")), "not unique"),
        (wf(Step(id="s1", type="terminal", text="x", citations=(Citation(doc_id="b", chunk_id="b#1"),))), "b#1"),
        (wf(Step(id="s1", type="terminal", text="  ")), "needs a text"),
    ],
)
def test_broken_workflows_name_their_problem(flow: Workflow, problem: str) -> None:
    found = problems(flow, {"a.md#0"})
    assert any(problem in p for p in found), found
    with pytest.raises(PlanError):
        validate(flow, {"a.md#0"})


def test_orphans_are_reported() -> None:
    flow = wf(process("s1", "s3"), process("s2", "s3"), terminal("s3"))
    assert any("one start" in p for p in problems(flow, {"a.md#0"}))
