"""GRPO rewards: a table of replies and their verdicts, without trl."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trainer.rewards import INVALID, INVALID_SHAPING, RewardWeights, completion_text, judge

GOLD = [
    {"type": "process", "text": "Check the pod logs for errors"},
    {"type": "decision", "text": "Is the node ready?"},
    {"type": "terminal", "text": "Restart the deployment"},
]


def step(sid: str, kind: str, text: str, nxt: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": sid, "type": kind, "text": text, "next": nxt, "yes": None, "no": None, "sources": [1]} | extra


def reply(*steps: dict[str, Any]) -> str:
    return json.dumps({"title": "Pod crash loop", "steps": list(steps)})


GOOD = reply(
    step("s1", "process", "Check the pod logs for errors", "s2"),
    step("s2", "decision", "Is the node ready?", yes="s3", no="s4"),
    step("s3", "terminal", "Restart the deployment"),
    step("s4", "terminal", "Escalate to the node team"),
)


@pytest.mark.parametrize(
    ("text", "n_sources", "readable", "rubric", "stepscore"),
    [
        # 3 of 4 steps match the 3 gold steps: P 3/4, R 1.
        pytest.param(GOOD, 2, True, 1.0, 6 / 7, id="valid-and-close-to-gold"),
        pytest.param(
            reply(step("s1", "process", "Order pizza for the team", "s2"), step("s2", "terminal", "Go home early")),
            2, True, 1.0, 0.0, id="valid-but-off-topic",
        ),
        # A process step that leads nowhere breaks validity; the rest of the rubric still counts.
        pytest.param(
            reply(step("s1", "process", "Check the pod logs"), step("s2", "terminal", "Restart the deployment")),
            2, True, 0.75, 26 / 35, id="process-step-without-next",  # matches 6/7 and 1 → P 13/14, R 13/21
        ),
        # Source 3 is not in a prompt that showed 2: no citation, so not grounded and not valid.
        pytest.param(
            reply(step("s1", "terminal", "Restart the deployment now", sources=[3])),
            2, True, (0 + 0 + 0.5 + 1) / 4, 0.4, id="cites-a-source-the-prompt-lacks",
        ),
        pytest.param(
            reply(step("s1", "process", "Check logs", "s2"), step("s2", "terminal", "Check logs")),
            1, True, (1 + 1 + 1 + 0) / 4, 4 / 15, id="short-repeated-steps-are-not-actionable",
        ),
        pytest.param("not json at all", 2, False, 0.0, 0.0, id="prose"),
        pytest.param(json.dumps({"title": "no steps"}), 2, False, 0.0, 0.0, id="json-but-not-a-workflow"),
        pytest.param(GOOD[:-20], 2, False, 0.0, 0.0, id="truncated-json"),
    ],
)  # fmt: skip
def test_verdicts(text: str, n_sources: int, readable: bool, rubric: float, stepscore: float) -> None:
    verdict = judge(text, GOLD, n_sources)
    assert verdict.readable is readable
    assert verdict.rubric == pytest.approx(rubric)
    assert verdict.stepscore == pytest.approx(stepscore, abs=1e-6)


def test_problems_of_a_readable_workflow_are_named() -> None:
    verdict = judge(reply(step("s1", "terminal", "Restart the deployment now", sources=[3])), GOLD, 2)
    assert "s1 cites no source" in verdict.problems


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        (RewardWeights(), 1.0 + 6 / 7),
        (RewardWeights(rubric=0.5, stepscore=0.0), 0.5),
        (RewardWeights(rubric=0.0, stepscore=2.0), 12 / 7),
    ],
)
def test_reward_weighs_rubric_and_stepscore(weights: RewardWeights, expected: float) -> None:
    assert judge(GOOD, GOLD, 2).reward(weights) == pytest.approx(expected)


def test_unreadable_reply_with_gold_words_earns_a_little_shaping() -> None:
    plain = judge("lorem ipsum", GOLD, 2).reward(RewardWeights())
    wordy = judge("check the pod logs then restart the deployment", GOLD, 2).reward(RewardWeights())
    assert plain == INVALID
    assert INVALID < wordy <= INVALID + INVALID_SHAPING


@given(st.text(max_size=300))
def test_every_readable_workflow_outranks_every_unreadable_reply(text: str) -> None:
    verdict = judge(text, GOLD, 2)
    if not verdict.readable:
        assert verdict.reward(RewardWeights()) <= INVALID + INVALID_SHAPING < 0
    worst_readable = judge(reply(step("s1", "process", "x")), GOLD, 2)
    assert worst_readable.readable and worst_readable.reward(RewardWeights()) >= 0


def test_conversational_completions_are_read_from_the_assistant_turn() -> None:
    completion = [{"role": "assistant", "content": GOOD}]
    assert completion_text(completion) == GOOD
    assert judge(completion_text(completion), GOLD, 2).readable


LINES_GOOD = (
    "1. Check the pod logs for errors [1]\n2? Is the node ready? yes: 3 no: 4 [1]\n3= Restart the deployment [2]\n"
)


@pytest.mark.parametrize(
    ("text", "readable", "rubric"),
    [
        # "no: 4" dangles: the serving repair sends it to the next line, so the workflow is valid.
        pytest.param(LINES_GOOD, True, 1.0, id="lines-repaired-and-valid"),
        pytest.param("1= Restart the deployment [3]\n", True, (0 + 0 + 0.5 + 1) / 4, id="lines-citing-outside"),
        pytest.param("Restart the deployment, I think.", False, 0.0, id="lines-prose"),
    ],
)
def test_lines_replies_are_judged_by_the_serving_reader(text: str, readable: bool, rubric: float) -> None:
    verdict = judge(text, GOLD, 2, "lines")
    assert verdict.readable is readable
    assert verdict.rubric == pytest.approx(rubric)
    if readable:
        assert verdict.stepscore == (1.0 if text == LINES_GOOD else 0.5)  # 1 of 3 gold steps, exactly
