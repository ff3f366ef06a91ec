"""The editable line form of a workflow: round trip, and errors that name the line."""

from __future__ import annotations

import pytest

from core.errors import PlanError
from core.types import Branches, Citation, Step, Workflow
from generation.editing import from_lines, to_lines

CITE = (Citation(doc_id="db.md", chunk_id="db.md#2"),)
FLOW = Workflow(
    title="Replica lag",
    steps=(
        Step(
            id="check", type="process", text="Check replication lag\nin pg_stat_replication", next="big", citations=CITE
        ),
        Step(id="big", type="decision", text="Is lag above 5 minutes?", branches=Branches(yes="fix", no="done")),
        Step(id="fix", type="process", text="Restart the WAL receiver", next="done"),
        Step(id="done", type="terminal", text="Monitor"),
    ),
)


def test_lines_read_back_into_the_same_shape_with_sources_kept() -> None:
    text = to_lines(FLOW)
    assert text.splitlines() == [
        "1. Check replication lag in pg_stat_replication",
        "2? Is lag above 5 minutes? yes: 3 no: 4",
        "3. Restart the WAL receiver",
        "4= Monitor",
    ]
    back = from_lines(text, FLOW)
    assert [(s.id, s.type, s.next) for s in back.steps] == [
        ("1", "process", "2"),
        ("2", "decision", None),
        ("3", "process", "4"),
        ("4", "terminal", None),
    ]
    assert back.steps[1].branches == Branches(yes="3", no="4")
    assert back.steps[0].citations == CITE and back.title == FLOW.title


def test_an_engineer_can_insert_and_reorder_steps() -> None:
    edited = "1. Check lag\n5. Check disk space on the replica\n2? Lag above 5 min? yes: 3 no: 4\n3. Restart\n4= Done"
    steps = from_lines(edited, FLOW).steps
    assert steps[0].next == "5" and steps[1].next == "2" and steps[1].citations == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "at least one step"),
        ("Check lag", "line 1"),
        ("1. a\n1. b", "same step number"),
        ("1? is it? yes: 2", "yes: N no: M"),
        ("1? is it? yes: 2 no: 9\n2= ok", "no step 9"),
        ("1.\n2= ok", "step 1 has no text"),
    ],
)
def test_unreadable_lines_are_named(text: str, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        from_lines(text, FLOW)
