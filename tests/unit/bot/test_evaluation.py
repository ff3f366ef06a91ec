from __future__ import annotations

import json
from typing import Any

import pytest

from bot.app import open_knowledge
from bot.evaluation import (
    Case,
    first_hit_rank,
    gold_workflow,
    pairwise_accuracy,
    percentiles,
    retrieval_metrics,
    scorer_pairs,
)
from core.settings import OllamaSettings, Settings
from core.types import Citation, Step, Workflow
from generation.ollama import OllamaChatModel
from generation.prompts import SCORE_CRITERIA
from generation.scorer import Scorer
from generation.validation import problems
from tests.fakes.ollama import fake_ollama


def case(doc_ids: tuple[str, ...], related: tuple[str, ...] = (), unanswerable: bool = False) -> Case:
    return Case(id="c", query="q", doc_ids=doc_ids, related_doc_ids=related, unanswerable=unanswerable)


def test_a_hit_counts_either_answering_or_related_documents() -> None:
    assert first_hit_rank(case(("a",), ("b",)), ["x", "b", "a"]) == 2
    assert first_hit_rank(case(("a",)), ["x", "y"]) is None


def test_metrics_skip_unanswerable_cases() -> None:
    cases = [case(("a",)), case(("b",)), case(("c",)), case((), unanswerable=True)]
    rankings = [["a"], ["x", "y", "b"], ["x"] * 6 + ["c"], ["a"]]
    metrics = retrieval_metrics(cases, rankings)
    assert metrics["hit_at_1"] == pytest.approx(1 / 3)
    assert metrics["hit_at_5"] == pytest.approx(2 / 3)
    assert metrics["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 7) / 3)


def test_percentiles() -> None:
    assert percentiles([float(v) for v in range(1, 101)]) == {"p50": 50.5, "p95": 95.05}
    assert percentiles([3.0]) == {"p50": 3.0, "p95": 3.0}


GOLD = (
    {"type": "process", "text": "Check the replication lag on the replica"},
    {"type": "decision", "text": "Is the lag above five minutes?"},
    {"type": "process", "text": "Restart the replication worker"},
    {"type": "terminal", "text": "Escalate to the database team"},
)


def test_the_gold_as_an_edit_is_a_valid_chain_keeping_the_answers_sources() -> None:
    cite = (Citation(doc_id="db.md", chunk_id="db.md#1"),)
    answer = Workflow(title="Lag", steps=(Step(id="s1", type="terminal", text="Look", citations=cite),))
    edited = gold_workflow(Case(id="c", query="lag", gold_steps=GOLD), answer)
    assert [(s.type, s.text) for s in edited.steps] == [(g["type"], g["text"]) for g in GOLD]
    decision = edited.steps[1].branches
    assert decision is not None and (decision.yes, decision.no) == ("3", "4")
    assert edited.title == "Lag" and edited.steps[0].citations == cite and edited.steps[1].citations == ()
    assert problems(edited, {"db.md#1"}) == []


def _steps_rated(body: dict[str, Any]) -> str:
    """A verdict rating a workflow by its number of steps (1–5): a longer copy wins, an equal one ties."""
    n = min(5, max(1, body["messages"][-1]["content"].split("<workflow", 1)[1].count("\n") - 1))
    return json.dumps(dict.fromkeys(SCORE_CRITERIA, n) | {"reasons": []})


async def test_the_scorers_pairs_come_from_the_cases_and_its_accuracy_counts_ties_half(sample_kb: Settings) -> None:
    cases = [
        Case(id="pg", query="FATAL: sorry, too many clients already on postgres", gold_steps=(
            {"type": "process", "text": "See who holds the connections in pg_stat_activity"},
            {"type": "decision", "text": "Are sessions stuck idle in transaction?"},
            {"type": "process", "text": "Terminate the idle in transaction sessions"},
            {"type": "terminal", "text": "Raise max_connections or add PgBouncer"},
        )),
        Case(id="redis", query="redis keeps evicting keys", gold_steps=(
            {"type": "process", "text": "Check used_memory against maxmemory"},
            {"type": "terminal", "text": "Raise maxmemory"},
        )),
        Case(id="none", query="the coffee machine is broken", unanswerable=True),
    ]  # fmt: skip
    async with open_knowledge(sample_kb) as kb:
        pairs = await scorer_pairs(kb.service, cases, seed=0)
        again = await scorer_pairs(kb.service, cases, seed=0)
        assert [(k, g, b) for k, _, g, b in pairs] == [(k, g, b) for k, _, g, b in again]
        kinds = [kind for kind, *_ in pairs]
        assert {"shuffled", "decision_dropped", "other_runbook"} <= set(kinds)
        assert all(len(p[2].steps) in (2, 4) and [s.text for s in p[2].steps] != [s.text for s in p[3].steps]
                   for p in pairs)  # fmt: skip
        async with fake_ollama(_steps_rated) as server:
            model = OllamaChatModel(OllamaSettings(host=server.url, model="llama3.1:8b", timeout_s=5))
            try:
                result = await pairwise_accuracy(Scorer(model), pairs)
            finally:
                await model.aclose()
    expected = [1.0 if len(good.steps) > len(bad.steps) else 0.5 if len(good.steps) == len(bad.steps) else 0.0
                for _, _, good, bad in pairs]  # fmt: skip
    assert result["pairs"] == len(pairs) and result["pairwise_accuracy"] == round(sum(expected) / len(expected), 4)
    assert result["by_kind"]["shuffled"] == 0.5 and result["by_kind"]["decision_dropped"] == 1.0
    assert result["ties"] == round(expected.count(0.5) / len(expected), 4)
