"""The learning curve's pure parts: the split by document, the replayed Edit, the Scorer's corrupted pairs."""

from __future__ import annotations

import random

from bench.learning_curve import corruptions, gold_workflow, split_by_document
from bench.planners import summarise
from bot.evaluation import Case
from core.types import Citation, Step, Workflow
from generation.validation import problems

GOLD = (
    {"type": "process", "text": "Check the replication lag on the replica"},
    {"type": "decision", "text": "Is the lag above five minutes?"},
    {"type": "process", "text": "Restart the replication worker"},
    {"type": "terminal", "text": "Escalate to the database team"},
)


def case(n: int, doc: str, gold: tuple[dict[str, str], ...] = GOLD) -> Case:
    return Case(id=f"c{n}", query=f"question {n}", gold_steps=gold, doc_ids=(doc,))


def test_the_split_keeps_every_document_on_one_side_and_is_fixed_by_the_seed() -> None:
    cases = [case(n, f"doc{n % 7}.md") for n in range(30)]
    training, held = split_by_document(cases, 0.3, seed=4)
    assert {c.doc_ids[0] for c in training}.isdisjoint({c.doc_ids[0] for c in held})
    assert len(training) + len(held) == 30 and len({c.doc_ids[0] for c in held}) == 2
    assert split_by_document(cases, 0.3, seed=4) == (training, held)
    assert split_by_document(cases, 0.3, seed=5) != (training, held)


def test_the_replayed_edit_is_a_valid_workflow_keeping_the_answers_sources() -> None:
    cite = (Citation(doc_id="db.md", chunk_id="db.md#1"),)
    answer = Workflow(title="Lag", steps=(Step(id="s1", type="terminal", text="Look", citations=cite),))
    edited = gold_workflow(GOLD, answer, "Lag")
    assert [(s.type, s.text) for s in edited.steps] == [(g["type"], g["text"]) for g in GOLD]
    assert edited.steps[1].branches is not None and (edited.steps[1].branches.yes, edited.steps[1].branches.no) == (
        "3",
        "4",
    )
    assert edited.steps[0].citations == cite and edited.steps[1].citations == ()
    assert problems(edited, {"db.md#1"}) == []


def test_corruptions_differ_from_the_gold() -> None:
    other = case(2, "dns.md", ({"type": "terminal", "text": "Flush the DNS cache"},))
    worse = corruptions(case(1, "db.md"), other, random.Random(0))
    assert set(worse) == {"shuffled", "decision_dropped", "other_runbook"}
    assert sorted(g["text"] for g in worse["shuffled"]) == sorted(g["text"] for g in GOLD)
    assert worse["shuffled"] != list(GOLD)
    assert all(g["type"] != "decision" for g in worse["decision_dropped"]) and len(worse["decision_dropped"]) == 3


def test_invalid_replies_count_as_empty_workflows() -> None:
    rows = [
        {"valid": True, "f1": 0.8, "extractive_f1": 0.5, "with_fallback_f1": 0.8, "lint": [], "seconds": 4.0},
        {"valid": True, "f1": 0.1, "extractive_f1": 0.5, "with_fallback_f1": 0.1, "lint": ["x"], "seconds": 6.0},
        {"valid": False, "f1": 0.0, "extractive_f1": 0.6, "with_fallback_f1": 0.6, "lint": None, "seconds": 8.0},
    ]
    s = summarise(rows)
    assert (s["valid_rate"], s["valid_but_wrong"], s["llm_only_f1"]) == (0.6667, 0.3333, 0.3)
    assert (s["with_fallback_f1"], s["lint_clean_rate"], s["latency_s"]["p50"]) == (0.5, 0.5, 6.0)
