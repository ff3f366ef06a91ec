"""Training data tables: which answers pair up, which rows come out, and how they are split."""

from __future__ import annotations

import json
import random
import re
from typing import Any

import pytest

from core.types import Branches, Chunk, Citation, Passage, Retrieval, Step, Workflow
from generation.editing import chained
from generation.planner import parse_lines, parse_workflow
from generation.prompts import PLANNER_LINES_SYSTEM, planner_messages, scorer_messages
from generation.validation import problems
from trainer.datasets import (
    BuildConfig,
    Example,
    Judged,
    Preference,
    balance_labels,
    build,
    cap,
    correction_pairs,
    corrupted,
    corruption_pairs,
    demonstrations,
    dpo_row,
    held_back,
    judged,
    kto_row,
    labelled,
    planner_reply,
    resolve_labels,
    richness_pair,
    scorer_rows,
    verdict,
    vote_pairs,
)
from trainer.store import Feedback, Interaction

RUNBOOK = {
    "Meaning": "The database refuses new connections because max_connections is reached.",
    "Diagnosis": "- Check the number of active connections in pg_stat_activity.\n"
    "- Check whether a client leaks idle connections.",
    "Mitigation": "- Terminate idle connections older than one hour.\n- Raise max_connections and restart the pool.",
    "Escalation": "- Page the database team when the errors persist after the restart.",
}
OTHER = {"Mitigation": "- Flush the DNS cache on the affected nodes.\n- Restart the CoreDNS pods one at a time."}


def chunks(doc_id: str, sections: dict[str, str]) -> list[Chunk]:
    return [
        Chunk(chunk_id=f"{doc_id}#{n}", doc_id=doc_id, ordinal=n, title=doc_id, heading_path=(heading,), text=text)
        for n, (heading, text) in enumerate(sections.items())
    ]


def retrieval(query: str, lead: str = "db/PostgresTooManyConnections.md", others: int = 4) -> Retrieval:
    """The leading runbook's four sections, then other runbooks: eight passages, as the planner sees them."""
    found = chunks(lead, RUNBOOK)
    for doc_id in (f"net/Other{n}.md" for n in range(others)):
        found += chunks(doc_id, OTHER) if doc_id != lead else []
    passages = tuple(Passage(chunk=c, score=1.0 / (i + 1)) for i, c in enumerate(found))
    return Retrieval(query=query, passages=passages)


def workflow(*texts: str, cite: str = "db/PostgresTooManyConnections.md#2") -> Workflow:
    steps = [
        Step(id=f"s{i}", type="process", text=t, next=f"s{i + 1}", citations=(Citation(doc_id="d", chunk_id=cite),))
        for i, t in enumerate(texts[:-1], 1)
    ]
    last = Step(id=f"s{len(texts)}", type="terminal", text=texts[-1], citations=(Citation(doc_id="d", chunk_id=cite),))
    return Workflow(title="Too many connections", steps=(*steps, last))


GOOD = workflow("Terminate idle connections older than one hour", "Raise max_connections and restart the pool")
BAD = workflow("Restart the database server right away")
Q1, Q2 = "postgres refuses connections", "too many clients on the database"


def answer(n: int, query: str, wf: Workflow | None, votes: int, *, lead: str = "db/PostgresTooManyConnections.md",
           corrections: tuple[Workflow, ...] = ()) -> Judged:  # fmt: skip
    return Judged(n, retrieval(query, lead), wf, votes, corrections)


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        pytest.param([answer(1, Q1, GOOD, 1), answer(2, Q1, BAD, -1)], [(2, GOOD, BAD)], id="same question"),
        pytest.param([answer(1, Q1, GOOD, 2), answer(2, Q2, BAD, -1)], [(2, GOOD, BAD)], id="equivalent question"),
        pytest.param([answer(1, Q1, GOOD, 1), answer(2, Q1, BAD, -1, lead="net/Other0.md")], [], id="other runbook"),
        pytest.param([answer(1, Q1, GOOD, 1), answer(2, Q1, BAD, 1)], [], id="only upvotes"),
        pytest.param([answer(1, Q1, GOOD, 1), answer(2, Q1, None, -1)], [], id="abstention is no answer"),
        pytest.param([answer(1, Q1, GOOD, 1), answer(2, Q1, BAD, 0)], [], id="votes cancelled out"),
        pytest.param(
            [answer(1, Q1, GOOD, 1), answer(3, Q2, GOOD, 1), answer(2, Q1, BAD, -2)],
            [(2, GOOD, BAD), (2, GOOD, BAD)],
            id="each upvote pairs with the downvote",
        ),
    ],
)
def test_vote_pairs_prefer_upvoted_answers_to_the_same_or_an_equivalent_question(
    answers: list[Judged], expected: list[tuple[int, Workflow, Workflow]]
) -> None:
    by_id = {a.interaction_id: a for a in answers}
    pairs = vote_pairs(answers)
    assert [(p.chosen, p.rejected) for p in pairs] == [(c, r) for _, c, r in expected]
    # The prompt is the downvoted answer's own: that is the question the better workflow is taught for.
    assert [p.retrieval for p in pairs] == [by_id[i].retrieval for i, _, _ in expected]


def test_a_correction_is_preferred_to_the_answer_it_corrects() -> None:
    fixed = workflow("Terminate idle connections", "Page the database team")
    pairs = correction_pairs(
        [answer(1, Q1, BAD, -1, corrections=(fixed,)), answer(2, Q1, None, 0, corrections=(fixed,))]
    )
    assert [(p.chosen, p.rejected, p.origin) for p in pairs] == [(fixed, BAD, "correction")]


def record(answer_wf: Workflow | None, *, context: bool = True) -> Interaction:
    ctx = {"retrieval": retrieval(Q1).model_dump(mode="json")} if context else {"doc_ids": ["x"]}
    body = {"query": Q1, "abstained": answer_wf is None, "planner": "extractive", "model": "none"}
    if answer_wf is not None:
        body["workflow"] = answer_wf.model_dump(mode="json")
    return Interaction(id=7, origin="slack", query=Q1, answer=body, context=ctx)


@pytest.mark.parametrize(
    ("feedback", "votes", "corrections"),
    [
        ([Feedback(user="a", vote=1, step_flags={}), Feedback(user="b", vote=1, step_flags={})], 2, 0),
        ([Feedback(user="a", vote=1, step_flags={}), Feedback(user="b", vote=-1, step_flags={})], 0, 0),
        ([Feedback(user="a", vote=0, step_flags={"s1": "dangerous"})], -1, 0),
        ([Feedback(user="a", vote=-1, step_flags={}, corrected=GOOD.model_dump(mode="json"))], -1, 1),
    ],
    ids=["two upvotes", "split vote", "a flag without a vote is a downvote", "correction kept"],
)
def test_judged_sums_votes_and_keeps_corrections(feedback: list[Feedback], votes: int, corrections: int) -> None:
    found = judged(record(BAD), feedback)
    assert found is not None
    assert (found.votes, len(found.corrections), found.workflow) == (votes, corrections, BAD)
    assert found.retrieval == retrieval(Q1)


def test_an_answer_without_its_whole_context_is_left_out() -> None:
    assert judged(record(BAD, context=False), [Feedback(user="a", vote=1, step_flags={})]) is None


def test_the_completion_is_what_the_serving_parser_reads_back() -> None:
    r = retrieval(Q1)
    decision = Workflow(
        title="Connections",
        steps=(
            Step(
                id="s1",
                type="decision",
                text="Is a client leaking idle connections?",
                branches=Branches(yes="s2", no="s3"),
                citations=(Citation(doc_id="d", chunk_id="db/PostgresTooManyConnections.md#1"),),
            ),
            Step(
                id="s2",
                type="process",
                text="Terminate them",
                next="s3",
                citations=(Citation(doc_id="d", chunk_id="db/PostgresTooManyConnections.md#2"),),
            ),
            Step(id="s3", type="terminal", text="Page the database team", citations=()),
        ),
    )
    reply = planner_reply(decision, r)
    assert reply is not None
    assert json.loads(reply)["steps"][0]["sources"] == [2]  # chunk #1 is the prompt's source [2]
    back = parse_workflow(reply, r, 1.0)
    assert back.steps == tuple(
        s.model_copy(
            update={
                "citations": tuple(Citation(doc_id=c.chunk_id.split("#")[0], chunk_id=c.chunk_id) for c in s.citations)
            }
        )
        for s in decision.steps
    )


def test_a_workflow_the_schema_cannot_hold_gives_no_row() -> None:
    long = workflow(*(f"Check component number {n} of the cluster" for n in range(13)))
    assert planner_reply(long, retrieval(Q1)) is None
    assert dpo_row(Preference(retrieval(Q1), long, BAD, "votes")) is None


def test_rows_carry_the_exact_serving_prompt() -> None:
    r = retrieval(Q1)
    row = dpo_row(Preference(r, GOOD, BAD, "votes"))
    assert row is not None and row["prompt"] == planner_messages(r)
    assert [m["role"] for m in row["chosen"]] == ["assistant"]
    assert json.loads(row["chosen"][0]["content"])["steps"][0]["text"] == GOOD.steps[0].text
    kto = kto_row(Example(r, BAD, False, "downvoted"))
    assert kto is not None and kto["prompt"] == planner_messages(r) and kto["label"] is False


def test_rich_context_is_preferred_to_poor_context() -> None:
    pair = richness_pair(retrieval(Q1))
    assert pair is not None and pair.origin == "richness"
    chosen, rejected = [s.text for s in pair.chosen.steps], [s.text for s in pair.rejected.steps]
    assert "Raise max_connections and restart the pool" in chosen
    assert "Raise max_connections and restart the pool" not in rejected and len(rejected) < len(chosen)


def test_without_steps_in_the_leading_runbook_nothing_is_synthesised() -> None:
    passages = tuple(Passage(chunk=c, score=1.0) for c in chunks("db/Empty.md", {"Meaning": "It is down."}))
    assert richness_pair(Retrieval(query=Q1, passages=passages)) is None


def test_scorer_pairs_rate_the_better_workflow_higher() -> None:
    pair = richness_pair(retrieval(Q1))
    assert pair is not None
    rich_row, poor_row = scorer_rows(pair)
    assert rich_row["prompt"] == scorer_messages(pair.retrieval, pair.chosen)
    assert poor_row["prompt"] == scorer_messages(pair.retrieval, pair.rejected)
    high, low = json.loads(rich_row["chosen"][0]["content"]), json.loads(rich_row["rejected"][0]["content"])
    assert high["complete"] == 5 and low["complete"] < 5
    assert json.loads(poor_row["chosen"][0]["content"]) == low


def test_the_scorer_is_taught_that_a_shuffled_copy_is_out_of_order() -> None:
    texts = (
        "Check the active connections in pg_stat_activity",
        "Find the client that leaks idle connections",
        "Terminate idle connections older than one hour",
        "Raise max_connections and restart the pool",
    )
    ordered, shuffled = workflow(*texts), workflow(texts[2], texts[0], texts[3], texts[1])
    right = verdict(ordered, ordered, retrieval(Q1))
    wrong = verdict(shuffled, ordered, retrieval(Q1))
    assert right["ordered"] == 5 and wrong["ordered"] < 5
    assert wrong["complete"] == right["complete"] == 5
    assert "its steps are not in the runbook's order" in wrong["reasons"]


def test_kto_labels_follow_the_net_vote_and_a_tie_drops_the_row() -> None:
    examples = labelled([answer(1, Q1, GOOD, 2), answer(2, Q1, BAD, -1), answer(3, Q2, GOOD, 0)])
    assert [(e.workflow, e.label) for e in examples] == [(GOOD, True), (BAD, False)]
    row = kto_row(examples[1])
    assert row is not None
    both_ways = [("k", row), ("k", {**row, "label": True})]
    assert resolve_labels(both_ways) == []
    assert resolve_labels([*both_ways, ("k", row)]) == [("k", row)]


@pytest.mark.parametrize(("good", "bad", "kept"), [(10, 3, (4, 3)), (3, 10, (3, 4)), (5, 0, (5, 0)), (4, 3, (4, 3))])
def test_kto_labels_are_balanced(good: int, bad: int, kept: tuple[int, int]) -> None:
    rows = [(f"q{n}", {"n": n, "label": True}) for n in range(good)]
    rows += [(f"q{n}", {"n": n, "label": False}) for n in range(bad)]
    balanced = balance_labels(rows, random.Random(0))
    assert (sum(r["label"] for _, r in balanced), sum(not r["label"] for _, r in balanced)) == kept


def test_demonstrations_take_corrections_over_the_answer_they_fix() -> None:
    fixed = workflow("Terminate idle connections", "Page the database team")
    shown = demonstrations(
        [answer(1, Q1, GOOD, 1, corrections=(fixed,)), answer(2, Q2, GOOD, 1), answer(3, Q2, BAD, -1)]
    )
    assert [(e.workflow, e.origin) for e in shown] == [(fixed, "corrected"), (GOOD, "accepted")]


def test_rows_per_question_are_capped() -> None:
    rows = [(f"q{n % 2}", {"n": n}) for n in range(10)]
    kept = cap(rows, 3, random.Random(0))
    assert sorted(k for k, _ in kept) == ["q0"] * 3 + ["q1"] * 3


def test_held_back_questions_are_stable_and_never_empty() -> None:
    keys = [f"doc:{n}.md" for n in range(50)]
    held = held_back(keys, 0.2, seed=0)
    assert 3 <= len(held) <= 20
    assert held == held_back(reversed(keys), 0.2, seed=0)
    assert held_back([*keys, "doc:new.md"], 0.2, seed=0) - {"doc:new.md"} == held  # adding data moves nothing
    assert held != held_back(keys, 0.2, seed=1)
    assert len(held_back(["doc:a.md", "doc:b.md"], 0.01, seed=0)) == 1


def many_answers() -> list[Judged]:
    answers = []
    for n in range(12):
        lead = "db/PostgresTooManyConnections.md" if n % 3 == 0 else f"net/Other{n % 4}.md"
        answers += [
            answer(2 * n, f"question {n}", GOOD, 1, lead=lead),
            answer(2 * n + 1, f"question {n}", BAD, -1, lead=lead),
        ]
    return answers


def test_build_splits_by_question_so_nothing_leaks() -> None:
    data = build(many_answers(), cfg=BuildConfig(seed=3, eval_fraction=0.3, min_pairs=0))
    assert data.sizes()["dpo"]["eval"] > 0 and data.sizes()["dpo"]["train"] > 0
    for name in ("dpo", "kto", "sft", "grpo", "scorer"):
        train = {json.dumps(r["prompt"]) for r in data.train[name]}
        held = {json.dumps(r["prompt"]) for r in data.eval[name]}
        assert not train & held, name
    # Equivalent questions (same leading runbook, the prompt's first source) all went to one side.
    train_leads = {lead_of(r) for name in data.train for r in data.train[name]}
    held_leads = {lead_of(r) for name in data.eval for r in data.eval[name]}
    assert train_leads and held_leads and not train_leads & held_leads
    assert data.heldout_cases and all(c["gold_steps"] for c in data.heldout_cases)


def lead_of(row: dict[str, Any]) -> str:
    match = re.search(r"^\[1\] (\S+) ›", row["prompt"][-1]["content"], re.MULTILINE)
    assert match is not None
    return match.group(1)


def test_build_is_deterministic_and_hashes_its_snapshot() -> None:
    cfg = BuildConfig(seed=5, min_pairs=0)
    first, again = build(many_answers(), cfg=cfg), build(list(reversed(many_answers())), cfg=cfg)
    assert first == again
    assert build(many_answers(), cfg=BuildConfig(seed=6, min_pairs=0)).snapshot != first.snapshot
    assert len(first.snapshot) == 16


def test_identical_answers_give_one_row() -> None:
    twice = [answer(1, Q1, GOOD, 1), answer(2, Q1, GOOD, 1), answer(3, Q1, BAD, -1)]
    data = build(twice, cfg=BuildConfig(min_pairs=0, eval_fraction=0.5))
    assert sum(data.sizes()["dpo"].values()) == 1
    assert sum(data.sizes()["sft"].values()) == 1


@pytest.mark.parametrize(("min_pairs", "synthesised"), [(0, 0), (3, 2), (50, 4)])
def test_synthesised_pairs_only_top_up_scarce_human_pairs(min_pairs: int, synthesised: int) -> None:
    knowledge = [retrieval(f"how do I fix runbook {n}", lead=f"db/Runbook{n}.md") for n in range(4)]
    data = build([answer(1, Q1, GOOD, 1), answer(2, Q1, BAD, -1)], knowledge, cfg=BuildConfig(min_pairs=min_pairs))
    assert sum(data.sizes()["dpo"].values()) == 1 + synthesised
    assert sum(data.sizes()["sft"].values()) == 1 + len(knowledge)  # the accepted answer and the runbooks
    # Two rows per pair: the human and synthesised pairs, and the accepted answer ≻ its two corrupted
    # copies (shuffled, a step dropped; there is no other accepted runbook to swap in).
    assert sum(data.sizes()["scorer"].values()) == 2 * (1 + len(knowledge)) + 2 * 2


def test_lines_rows_carry_the_compact_prompt_and_read_back_with_the_serving_reader() -> None:
    r = retrieval(Q1)
    row = dpo_row(Preference(r, GOOD, BAD, "votes"), reply_format="lines")
    assert row is not None and row["prompt"] == planner_messages(r, reply_format="lines")
    chosen = row["chosen"][0]["content"]
    assert chosen == (
        "1. Terminate idle connections older than one hour [3]\n2= Raise max_connections and restart the pool [3]\n"
    )  # chunk #2 is the compact prompt's source [3]
    back, repairs = parse_lines(chosen, r, 1.0)
    assert repairs == 0 and [s.text for s in back.steps] == [s.text for s in GOOD.steps]
    assert [c.chunk_id for s in back.steps for c in s.citations] == ["db/PostgresTooManyConnections.md#2"] * 2


def test_build_renders_every_planner_dataset_in_the_configured_reply_format() -> None:
    answers = [answer(1, Q1, GOOD, 1), answer(2, Q2, BAD, -1, corrections=(GOOD,))]
    data = build(answers, [retrieval(Q1)], cfg=BuildConfig(min_pairs=0, eval_fraction=0.01, reply_format="lines"))
    rows = [row for part in (data.train, data.eval) for name in ("sft", "dpo", "kto") for row in part[name]]
    assert len(rows) == 6 and all(r["prompt"][0]["content"] == PLANNER_LINES_SYSTEM for r in rows)
    completions = [r.get("completion", r.get("chosen"))[0]["content"] for r in rows]
    assert all(re.match(r"^1[.?=] ", c) for c in completions)
    assert {r["reply_format"] for part in (data.train, data.eval) for r in part["grpo"]} == {"lines"}


def _texts(w: Workflow) -> list[str]:
    return [s.text for s in w.steps]


def test_corrupted_copies_are_worse_by_kind_and_keep_the_sources_by_position() -> None:
    decision = Step(id="s2", type="decision", text="Are there idle connections?", branches=Branches(yes="s3", no="s4"))
    base = workflow("Check pg_stat_activity", "Terminate idle connections", "Raise max_connections")
    good = chained(base.title, (base.steps[0], decision, *base.steps[1:]))
    other = workflow("Flush the DNS cache", "Restart CoreDNS", cite="net/Dns.md#0")
    worse = corrupted(good, other, random.Random(0))
    assert set(worse) == {"shuffled", "decision_dropped", "other_runbook"}
    assert sorted(_texts(worse["shuffled"])) == sorted(_texts(good)) and _texts(worse["shuffled"]) != _texts(good)
    assert "Are there idle connections?" not in _texts(worse["decision_dropped"])
    assert _texts(worse["other_runbook"]) == ["Flush the DNS cache", "Restart CoreDNS"]
    assert worse["other_runbook"].steps[0].citations == good.steps[0].citations
    assert all(problems(w, {"db/PostgresTooManyConnections.md#2"}) == [] for w in worse.values())


def test_the_scorer_also_learns_from_corrupted_copies_of_accepted_answers() -> None:
    answers = [answer(1, Q1, GOOD, 1), answer(2, Q2, workflow("Check disk", "Grow the volume"), 1, lead="db/Disk.md")]
    pairs = corruption_pairs(demonstrations(answers), seed=0)
    assert {p.origin for p in pairs} == {"corruption"} and {p.chosen for p in pairs} == {a.workflow for a in answers}
    assert all(_texts(p.rejected) != _texts(p.chosen) for p in pairs)
    data = build(answers)
    rows = data.train["scorer"] + data.eval["scorer"]
    assert any(r["prompt"] == scorer_messages(pairs[0].retrieval, pairs[0].rejected) for r in rows)
