"""The Planner's numbered-line replies: reading, link repair, writing, and the grammar."""

from __future__ import annotations

import importlib.util

import pytest

from core.types import Branches, Chunk, Citation, Passage, Step, Workflow
from generation.lines import lines_grammar, read_lines, write_lines
from generation.validation import problems

SHOWN = tuple(
    Passage(chunk=Chunk(chunk_id=f"c{n}", doc_id="PodCrash.md", ordinal=n, title="PodCrash", text=text), score=1.0)
    for n, text in enumerate(["Check the pod status with kubectl get pods.", "Read the previous logs."], 1)
)
REPLY = """1. Check the pod status with kubectl get pods [1]
2? Is the pod in CrashLoopBackOff? yes: 3 no: 4 [1]
3. Read the logs of the previous container [2]
4= Escalate to the owning team [2]
"""


def shape(workflow: Workflow) -> list[tuple[str, str, str | None, tuple[str, str] | None]]:
    return [(s.id, s.type, s.next, (s.branches.yes, s.branches.no) if s.branches else None) for s in workflow.steps]


def test_a_well_formed_reply_reads_without_repairs() -> None:
    reply = read_lines(REPLY, "pod crash", SHOWN)
    assert not reply.repaired
    assert shape(reply.workflow) == [
        ("1", "process", "2", None),
        ("2", "decision", None, ("3", "4")),
        ("3", "process", "4", None),
        ("4", "terminal", None, None),
    ]
    assert reply.workflow.steps[1].text == "Is the pod in CrashLoopBackOff?"
    assert [c.chunk_id for s in reply.workflow.steps for c in s.citations] == ["c1", "c1", "c2", "c2"]
    assert problems(reply.workflow, {"c1", "c2"}) == []


@pytest.mark.parametrize(
    ("reply", "expected", "links"),
    [
        # "no" to a step that does not exist goes to the first terminal the "yes" does not take
        (
            "1? Is it down? yes: 2 no: 9 [1]\n2. Restart it [1]\n3= Escalate [2]\n",
            [("1", "decision", None, ("2", "3"))],
            1,
        ),
        # … or to the next line when there is none
        ("1? Is it down? yes: 2 no: 9 [1]\n2= Restart it [1]\n", [("1", "decision", None, ("2", "2"))], 1),
        # "yes" back to the start (a second start would be invalid) goes to the next line
        ("1. Look [1]\n2? Still down? yes: 1 no: 3 [1]\n3= Escalate [2]\n", [("2", "decision", None, ("3", "3"))], 1),
        # a decision on the last line has nowhere to go: it ends the workflow
        ("1. Look [1]\n2? Still down? yes: 5 no: 6 [1]\n", [("2", "terminal", None, None)], 2),
        # a process step on the last line ends the workflow
        ("1. Look [1]\n2. Restart [1]\n", [("2", "terminal", None, None)], 1),
    ],
)
def test_dangling_links_are_repaired_and_counted(
    reply: str, expected: list[tuple[str, str, str | None, tuple[str, str] | None]], links: int
) -> None:
    read = read_lines(reply, "t", SHOWN)
    assert read.links_repaired == links
    by_id = {row[0]: row for row in shape(read.workflow)}
    assert [by_id[row[0]] for row in expected] == expected
    assert problems(read.workflow, {"c1", "c2"}) == []


def test_lines_that_are_not_steps_and_unreachable_steps_are_dropped() -> None:
    reply = "Here is the workflow:\n1? Up? yes: 2 no: 3 [1]\n2= Done [1]\n3= Escalate [1]\n4. Orphan [2]\n5= End [2]\n"
    read = read_lines(reply, "t", SHOWN)
    assert read.lines_dropped == 3 and [s.id for s in read.workflow.steps] == ["1", "2", "3"]
    assert problems(read.workflow, {"c1"}) == []


def test_a_terminal_no_decision_leads_to_goes_on_to_the_next_line() -> None:
    read = read_lines("1. Look [1]\n2= Restart it [1]\n3. Check again [2]\n4= Escalate [2]\n", "t", SHOWN)
    assert read.links_repaired == 1 and not read.lines_dropped
    assert shape(read.workflow) == [
        ("1", "process", "2", None),
        ("2", "process", "3", None),
        ("3", "process", "4", None),
        ("4", "terminal", None, None),
    ]


def test_no_step_at_all_is_an_empty_workflow_that_validation_refuses() -> None:
    read = read_lines("I cannot help with that.", "t", SHOWN)
    assert read.workflow.steps == () and problems(read.workflow, set()) == ["the workflow has no steps"]


def test_a_source_number_outside_the_prompt_is_no_citation() -> None:
    read = read_lines("1= Restart it [7]\n", "t", SHOWN)
    assert read.workflow.steps[0].citations == ()


def test_written_lines_read_back_as_the_same_workflow() -> None:
    cite = (Citation(doc_id="PodCrash.md", chunk_id="c2"),)
    workflow = Workflow(
        title="t",
        steps=(
            Step(id="a", type="process", text="Check [the] pod status", next="b", citations=cite),
            Step(id="b", type="decision", text="Is it crash looping? Really?", branches=Branches(yes="c", no="d")),
            Step(id="c", type="terminal", text="Roll back the release", citations=cite),
            Step(id="d", type="terminal", text="Escalate to the owning team", citations=cite),
        ),
    )
    written = write_lines(workflow, SHOWN)
    assert written is not None
    assert written.splitlines()[1] == "2? Is it crash looping Really? yes: 3 no: 4 [1]"  # uncited: closest source
    read = read_lines(written, "t", SHOWN)
    assert not read.repaired
    assert (read.workflow.steps[0].type, read.workflow.steps[0].text) == ("process", "Check (the) pod status")
    assert shape(read.workflow) == [
        ("1", "process", "2", None),
        ("2", "decision", None, ("3", "4")),
        ("3", "terminal", None, None),
        ("4", "terminal", None, None),
    ]


def test_a_process_step_that_skips_lines_cannot_be_written() -> None:
    steps = (
        Step(id="1", type="process", text="Look", next="3"),
        Step(id="2", type="terminal", text="Unused"),
        Step(id="3", type="terminal", text="Done"),
    )
    assert write_lines(Workflow(title="t", steps=steps), SHOWN) is None


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="needs llama-cpp-python")
def test_the_grammar_is_valid_gbnf() -> None:
    from llama_cpp import LlamaGrammar

    assert LlamaGrammar.from_string(lines_grammar(3, 8), verbose=False) is not None
    assert 'src ::= "1" | "2" | "3"' in lines_grammar(3, 8)


def test_a_line_cut_off_by_the_token_limit_is_dropped() -> None:
    read = read_lines("1. Look [1]\n2= Escalate [2]\n3. Che", "t", SHOWN)
    assert read.lines_dropped == 1 and [s.text for s in read.workflow.steps] == ["Look", "Escalate"]
