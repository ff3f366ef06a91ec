"""Feedback changes the next answer at once (issue 10): 👎 + Edit, then the same question from someone
else gets the corrected workflow, attributed, until the runbook it cites changes; a step flagged wrong
is not proposed again for that incident; the feedback training reads is what people gave, nothing more."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from bot.app import open_knowledge
from bot.feedback import EDIT_VIEW
from bot.ingest import ingest
from core.settings import Settings
from generation.rendering import FEEDBACK_DOWN, FLAG_STEP
from tests.botharness import RunningBot, running_bot

QUESTION = "pods keep restarting with CrashLoopBackOff, what do I do?"
CORRECTED = (
    "1. Read the crashed container's logs with kubectl logs --previous\n"
    "2? Did it exit with code 137? yes: 3 no: 4\n"
    "3= Raise the container's memory limit\n"
    "4= Escalate to the owning team"
)


def _click(action_id: str, value: str, user: str, **extra: Any) -> dict[str, Any]:
    action = {"action_id": action_id, "block_id": "b", "value": value, "type": "button", **extra}
    return {
        "type": "block_actions",
        "user": {"id": user},
        "trigger_id": "t",
        "channel": {"id": "C1"},
        "actions": [action],
    }


def _edit(answer_id: str, text: str, user: str) -> dict[str, Any]:
    values = {"steps": {"steps": {"type": "plain_text_input", "value": text}}}
    view = {"id": "V1", "type": "modal", "callback_id": EDIT_VIEW, "private_metadata": answer_id}
    return {"type": "view_submission", "user": {"id": user}, "view": {**view, "state": {"values": values}}}


async def ask(bot: RunningBot, user: str, ts: str) -> tuple[dict[str, Any], int]:
    """Mention the bot as ``user`` in a new thread; the card's call args and the answer's id."""
    before = len(bot.slack.of("chat.update"))
    mention = {"type": "app_mention", "user": user, "channel": "C1", "ts": ts, "text": f"<@UBOT> {QUESTION}"}
    await bot.client.event(mention, f"Ev{ts}")
    card = (await bot.slack.wait_for("chat.update", count=before + 1))[before].args
    interaction = await bot.bot.kb.records.interaction_at("C1", card["ts"])
    assert interaction is not None
    return card, interaction.id


def step_texts(card: dict[str, Any]) -> str:
    return json.dumps(card["blocks"])


async def correct(bot: RunningBot, answer_id: int, user: str) -> None:
    assert (await bot.client.interaction(_click(FEEDBACK_DOWN, str(answer_id), user))).status == 200
    assert (await bot.client.interaction(_edit(str(answer_id), CORRECTED, user))).status == 200


async def test_an_edit_becomes_the_answer_for_the_next_person_until_the_runbook_changes(
    settings: Settings, sample_copy: Path, tmp_path: Path
) -> None:
    async with open_knowledge(settings) as kb:
        await ingest([sample_copy], kb.builder, max_bytes=settings.ingest.max_document_bytes)
    async with running_bot(settings, tmp_path / "r.sqlite") as bot:
        first, first_id = await ask(bot, "U1", "20.1")
        assert "code 137" not in step_texts(first)
        await correct(bot, first_id, "U2")
        feedback_given = [(f.user, f.vote, f.corrected) for f, _ in await bot.bot.kb.records.feedback()]

        second, second_id = await ask(bot, "U3", "21.1")
        shown = step_texts(second)
        assert "Did it exit with code 137?" in shown and "Raise the container" in shown
        assert f"corrected by <@U2> on {dt.datetime.now(dt.UTC):%Y-%m-%d}" in shown
        assert [(f.user, f.vote, f.corrected) for f, _ in await bot.bot.kb.records.feedback()] == feedback_given
        assert len(feedback_given) == 1 and feedback_given[0][1] == -1

        runbook = sample_copy / "kubernetes" / "KubePodCrashLooping.md"
        runbook.write_text(runbook.read_text() + "\n\nReviewed after the incident of last week.\n")
        await ingest([sample_copy], bot.bot.kb.builder, max_bytes=settings.ingest.max_document_bytes)
        third, _ = await ask(bot, "U4", "22.1")
        assert "code 137" not in step_texts(third) and "corrected by" not in step_texts(third)
    assert second_id != first_id


async def test_a_step_flagged_wrong_is_not_proposed_again_for_that_incident(
    sample_kb: Settings, tmp_path: Path
) -> None:
    async with running_bot(sample_kb, tmp_path / "r.sqlite") as bot:
        _, answer_id = await ask(bot, "U1", "30.1")
        interaction = await bot.bot.kb.records.interaction(answer_id)
        assert interaction is not None
        steps = interaction.answer["workflow"]["steps"]
        flagged = next(s for s in steps if s["type"] == "process" and s["next"])
        option = {"selected_option": {"value": f"{answer_id}|wrong|{flagged['id']}"}, "type": "overflow"}
        await bot.client.interaction(_click(FLAG_STEP, "", "U2", **option))

        _, second_id = await ask(bot, "U3", "31.1")
        again = await bot.bot.kb.records.interaction(second_id)
        assert again is not None
        texts = [s["text"] for s in again.answer["workflow"]["steps"]]
        assert flagged["text"] not in texts and len(texts) == len(steps) - 1
        ids = {s["id"] for s in again.answer["workflow"]["steps"]}
        targets = [t for s in again.answer["workflow"]["steps"] for t in (s["next"], *(s["branches"] or {}).values())]
        assert all(t in ids for t in targets if t), "every step still leads somewhere that exists"
