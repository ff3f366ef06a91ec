"""The learning curve's pure parts: the split by document and the LLM-only summary."""

from __future__ import annotations

from bench.learning_curve import split_by_document
from bench.planners import summarise
from bot.evaluation import Case

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


def test_invalid_replies_count_as_empty_workflows() -> None:
    rows = [
        {"valid": True, "f1": 0.8, "extractive_f1": 0.5, "with_fallback_f1": 0.8, "lint": [], "seconds": 4.0},
        {"valid": True, "f1": 0.1, "extractive_f1": 0.5, "with_fallback_f1": 0.1, "lint": ["x"], "seconds": 6.0},
        {"valid": False, "f1": 0.0, "extractive_f1": 0.6, "with_fallback_f1": 0.6, "lint": None, "seconds": 8.0},
    ]
    s = summarise(rows)
    assert (s["valid_rate"], s["valid_but_wrong"], s["llm_only_f1"]) == (0.6667, 0.3333, 0.3)
    assert (s["with_fallback_f1"], s["lint_clean_rate"], s["latency_s"]["p50"]) == (0.5, 0.5, 6.0)
