"""The bot in Slack, end to end over real HTTP: signed requests in, Web API calls out to a loopback fake."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from bot.feedback import DOWNVOTE_VIEW, EDIT_VIEW
from bot.server import socket_mode
from bot.threads import PLACEHOLDER
from core.settings import Settings
from generation.rendering import EDIT_WORKFLOW, FEEDBACK_DOWN, FEEDBACK_UP, FLAG_STEP
from tests.botharness import RunningBot, running_bot

QUESTION = "pods keep restarting with CrashLoopBackOff, what do I do?"


@pytest.fixture
async def bot(sample_kb: Settings, tmp_path: Path) -> Any:
    async with running_bot(sample_kb, tmp_path / "records.sqlite") as running:
        yield running


def mention(text: str, ts: str = "1700000000.000001", channel: str = "C1", **extra: Any) -> dict[str, Any]:
    return {"type": "app_mention", "user": "U1", "text": f"<@UBOT> {text}", "ts": ts, "channel": channel, **extra}


async def answered(bot: RunningBot, event_id: str = "Ev1", **extra: Any) -> tuple[str, str]:
    """Mention the bot and wait for its card; returns (channel, ts of the answer message)."""
    response = await bot.client.event(mention(QUESTION, **extra), event_id)
    assert response.status == 200
    update = (await bot.slack.wait_for("chat.update"))[0]
    return update.args["channel"], update.args["ts"]


async def test_a_mention_gets_a_placeholder_in_the_thread_then_the_workflow_card(bot: RunningBot) -> None:
    response = await bot.client.event(mention(QUESTION), "Ev1")
    assert response.status == 200

    placeholder = (await bot.slack.wait_for("chat.postMessage"))[0]
    assert placeholder.args["text"] == PLACEHOLDER
    assert placeholder.args["thread_ts"] == "1700000000.000001"
    update = (await bot.slack.wait_for("chat.update"))[0]
    assert update.args["ts"] == (await _posted_ts(bot, 0))
    blocks = update.args["blocks"]
    assert blocks[0]["type"] == "header"
    assert "KubePodCrashLooping" in json.dumps(blocks)
    buttons = [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert buttons == [FEEDBACK_UP, FEEDBACK_DOWN, EDIT_WORKFLOW, "run_checks"]

    interaction = await bot.bot.kb.records.interaction_at("C1", update.args["ts"])
    assert interaction is not None and interaction.query == QUESTION and not interaction.abstained
    assert interaction.context["retrieval"]["passages"], "the exact context is kept for training"


async def _posted_ts(bot: RunningBot, index: int) -> str:
    # The fake answers chat.postMessage with increasing ts values; read back what it returned.
    return sorted(ts for (_, ts) in bot.slack.messages)[index]


async def test_a_retried_event_is_not_answered_twice(bot: RunningBot) -> None:
    await answered(bot, "EvRetry")
    again = await bot.client.event(mention(QUESTION), "EvRetry", **{"X-Slack-Retry-Num": "1"})
    assert again.status == 200
    await asyncio.sleep(0.5)
    assert len(bot.slack.of("chat.postMessage")) == 1
    assert len(bot.slack.of("chat.update")) == 1


async def test_forged_or_stale_signatures_are_refused(bot: RunningBot) -> None:
    bot.client.secret = "not-the-secret"
    forged = await bot.client.event(mention(QUESTION), "EvForged")
    bot.client.secret = "test-signing-secret"
    stale = await bot.client.send(json.dumps({"type": "event_callback"}), "application/json", age=600)
    assert (forged.status, stale.status) == (401, 401)
    await asyncio.sleep(0.2)
    assert not bot.slack.of("chat.postMessage")


async def test_reactions_vote_and_removing_one_withdraws_the_vote(bot: RunningBot) -> None:
    channel, ts = await answered(bot)
    item = {"type": "message", "channel": channel, "ts": ts}
    records = bot.bot.kb.records
    interaction = await records.interaction_at(channel, ts)
    assert interaction is not None

    assert (await bot.client.event({"type": "reaction_added", "user": "U2", "reaction": "+1", "item": item}, "Ev2")).ok
    # Recorded before the 200: no waiting needed.
    assert (await records.user_feedback(interaction.id, "U2")).vote == 1  # type: ignore[union-attr]
    thumbs_down = {"type": "reaction_added", "user": "U2", "reaction": "-1::skin-tone-2", "item": item}
    await bot.client.event(thumbs_down, "Ev3")
    assert (await records.user_feedback(interaction.id, "U2")).vote == -1  # type: ignore[union-attr]
    await bot.client.event({**thumbs_down, "type": "reaction_removed"}, "Ev4")
    assert (await records.user_feedback(interaction.id, "U2")).vote == 0  # type: ignore[union-attr]

    other = {"type": "message", "channel": channel, "ts": "1.2"}
    await bot.client.event({"type": "reaction_added", "user": "U3", "reaction": "+1", "item": other}, "Ev5")
    await bot.client.event({"type": "reaction_added", "user": "U3", "reaction": "tada", "item": item}, "Ev6")
    assert await records.user_feedback(interaction.id, "U3") is None


def _action(action_id: str, value: str, user: str = "U2", **extra: Any) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "user": {"id": user},
        "trigger_id": "trigger-1",
        "channel": {"id": "C1"},
        "actions": [{"action_id": action_id, "block_id": "b", "value": value, "type": "button", **extra}],
    }


def _submission(callback_id: str, metadata: str, values: dict[str, Any], user: str = "U2") -> dict[str, Any]:
    return {
        "type": "view_submission",
        "user": {"id": user},
        "view": {
            "id": "V1",
            "type": "modal",
            "callback_id": callback_id,
            "private_metadata": metadata,
            "state": {"values": values},
        },
    }


async def test_thumbs_down_button_opens_the_reason_modal_and_both_are_kept(bot: RunningBot) -> None:
    channel, ts = await answered(bot)
    interaction = await bot.bot.kb.records.interaction_at(channel, ts)
    assert interaction is not None
    answer_id = str(interaction.id)

    response = await bot.client.interaction(_action(FEEDBACK_DOWN, answer_id))
    assert response.status == 200
    view = (await bot.slack.wait_for("views.open"))[0].args["view"]
    view = json.loads(view) if isinstance(view, str) else view
    assert view["callback_id"] == DOWNVOTE_VIEW and view["private_metadata"] == answer_id

    reason = {"reason": {"reason": {"type": "plain_text_input", "value": "step 3 restarts the wrong deployment"}}}
    assert (await bot.client.interaction(_submission(DOWNVOTE_VIEW, answer_id, reason))).status == 200
    feedback = await bot.bot.kb.records.user_feedback(interaction.id, "U2")
    assert feedback is not None and (feedback.vote, feedback.reason) == (-1, "step 3 restarts the wrong deployment")


async def test_edit_modal_stores_the_correction_beside_the_original(bot: RunningBot) -> None:
    channel, ts = await answered(bot)
    interaction = await bot.bot.kb.records.interaction_at(channel, ts)
    assert interaction is not None
    answer_id = str(interaction.id)

    await bot.client.interaction(_action(EDIT_WORKFLOW, answer_id))
    view = (await bot.slack.wait_for("views.open"))[0].args["view"]
    view = json.loads(view) if isinstance(view, str) else view
    lines = view["blocks"][1]["element"]["initial_value"].splitlines()
    assert view["callback_id"] == EDIT_VIEW and lines[0].startswith("1")

    broken = {"steps": {"steps": {"type": "plain_text_input", "value": "first do this\nthen that"}}}
    refused = await bot.client.interaction(_submission(EDIT_VIEW, answer_id, broken))
    assert (await refused.json())["response_action"] == "errors"

    corrected = (
        "1. Check the pod events with kubectl describe pod\n"
        "2? Is it OOMKilled? yes: 3 no: 4\n3= Raise the memory limit\n4= Escalate"
    )
    values = {"steps": {"steps": {"type": "plain_text_input", "value": corrected}}}
    assert (await bot.client.interaction(_submission(EDIT_VIEW, answer_id, values))).status == 200
    feedback = await bot.bot.kb.records.user_feedback(interaction.id, "U2")
    assert feedback is not None and feedback.corrected is not None
    steps = feedback.corrected["steps"]
    assert [s["type"] for s in steps] == ["process", "decision", "terminal", "terminal"]
    assert steps[1]["branches"] == {"yes": "3", "no": "4"}
    assert (await bot.bot.kb.records.interaction(interaction.id)).answer == interaction.answer  # type: ignore[union-attr]


async def test_a_step_can_be_flagged_from_its_menu(bot: RunningBot) -> None:
    channel, ts = await answered(bot)
    interaction = await bot.bot.kb.records.interaction_at(channel, ts)
    assert interaction is not None
    option = {"selected_option": {"value": f"{interaction.id}|dangerous|s2"}, "type": "overflow"}
    await bot.client.interaction(_action(FLAG_STEP, "", **option))
    feedback = await bot.bot.kb.records.user_feedback(interaction.id, "U2")
    assert feedback is not None and feedback.step_flags == {"s2": "dangerous"} and feedback.vote == 0


async def test_admin_commands_are_refused_to_everyone_else(bot: RunningBot) -> None:
    refused = await bot.client.command("ingest /srv/runbooks", user="U1")
    assert "admins only" in await refused.text()
    allowed = await bot.client.command("ingest /does/not/exist", user="UADMIN")
    assert "Working on" in await allowed.text()
    assert "Usage" in (await bot.slack.wait_for("response_url"))[0].args["text"]  # done after the ack
    assert [e.actor for e in await bot.bot.kb.records.audit_log(action="slack:ingest")] == ["UADMIN"]


async def test_help_and_unknown_subcommands_answer_at_once(bot: RunningBot) -> None:
    help_text = await (await bot.client.command("help", user="U1")).text()
    unknown = await (await bot.client.command("frobnicate", user="U1")).text()
    assert "/opsflow ask" in help_text and "I don't know `frobnicate`" in unknown


async def test_a_follow_up_in_the_thread_keeps_the_thread_context(bot: RunningBot) -> None:
    await answered(bot)
    follow_up = mention("what if the previous logs are empty?", ts="1700000000.000009", thread_ts="1700000000.000001")
    await bot.client.event(follow_up, "Ev7")
    await bot.slack.wait_for("chat.update", count=2)
    history = await bot.bot.kb.records.thread_history("C1", "1700000000.000001")
    assert [i.query for i in history] == [QUESTION, "what if the previous logs are empty?"]
    assert QUESTION in history[1].context["query"]


async def test_channels_not_configured_get_a_polite_note(sample_kb: Settings, tmp_path: Path) -> None:
    async with running_bot(sample_kb, tmp_path / "r.sqlite", slack={"channels": ("CALLOWED",)}) as bot:
        await bot.client.event(mention(QUESTION, channel="COTHER"), "Ev8")
        note = (await bot.slack.wait_for("chat.postEphemeral"))[0]
        assert note.args["channel"] == "COTHER" and not bot.slack.of("chat.postMessage")


async def test_health_and_metrics(bot: RunningBot) -> None:
    await answered(bot)
    health = await bot.http.get(f"{bot.url}/healthz")
    body = await health.json()
    assert health.status == 200 and body["checks"]["records"] == "ok" and body["checks"]["index"] == "ok"
    metrics = await (await bot.http.get(f"{bot.url}/metrics")).text()
    assert 'opsflow_answers_total{origin="slack",outcome="answered"} 1.0' in metrics
    assert 'opsflow_http_requests_total{path="/slack/events",status="200"}' in metrics


async def test_socket_mode_answers_without_the_http_route(sample_kb: Settings, tmp_path: Path) -> None:
    async with running_bot(sample_kb, tmp_path / "r.sqlite", slack={"app_token": "xapp-test"}) as bot:
        refused = await bot.client.event(mention(QUESTION), "EvHttp")
        assert refused.status == 404, "without signatures, HTTP must not be a way in"
        envelope = {"type": "event_callback", "event_id": "EvSock", "team_id": "T1", "event": mention(QUESTION)}
        bot.slack.send_over_socket("events_api", envelope, "env-1")
        async with socket_mode(bot.bot):
            update = (await bot.slack.wait_for("chat.update"))[0]
            assert update.args["blocks"][0]["type"] == "header"
            assert "env-1" in bot.slack.socket_acks


async def test_shutdown_finishes_the_answers_in_flight(sample_kb: Settings, tmp_path: Path) -> None:
    async with running_bot(sample_kb, tmp_path / "r.sqlite") as bot:
        await bot.client.event(mention(QUESTION), "EvLate")
        await bot.slack.wait_for("chat.postMessage")  # the placeholder is out; the answer is being built
    assert len(bot.slack.of("chat.update")) == 1


async def test_direct_messages_are_answered_and_bot_messages_ignored(bot: RunningBot) -> None:
    dm = {"type": "message", "channel_type": "im", "channel": "D1", "user": "U1", "text": QUESTION, "ts": "5.1"}
    await bot.client.event({**dm, "bot_id": "B9", "ts": "5.0"}, "EvBot")
    await bot.client.event(dm, "EvDm")
    update = (await bot.slack.wait_for("chat.update"))[0]
    assert update.args["channel"] == "D1"
    assert [c.args["thread_ts"] for c in bot.slack.of("chat.postMessage")] == ["5.1"]


async def test_the_flowchart_is_attached_when_enabled(sample_kb: Settings, tmp_path: Path) -> None:
    async with running_bot(sample_kb, tmp_path / "r.sqlite", slack={"attach_picture": True}) as bot:
        await bot.client.event(mention(QUESTION), "EvPic")
        upload = (await bot.slack.wait_for("upload"))[0]
        done = (await bot.slack.wait_for("files.completeUploadExternal"))[0]
        assert upload.args["bytes"] > 1000 and done.args["channel_id"] == "C1"


async def test_an_oversized_question_gets_a_clear_note_instead_of_an_answer(bot: RunningBot) -> None:
    await bot.client.event(mention("x " * 5000), "EvBig")
    note = (await bot.slack.wait_for("chat.postMessage"))[0]
    assert "characters" in note.args["text"] and not bot.slack.of("chat.update")


async def test_a_search_backend_that_is_down_gets_a_clear_note_in_the_thread(
    sample_kb: Settings, tmp_path: Path
) -> None:
    pytest.importorskip("elasticsearch")  # imported here: a first import reads files, once, as the bot starts
    down = {"backend": "elasticsearch", "es_url": "http://127.0.0.1:9", "timeout_s": 1}
    async with running_bot(sample_kb, tmp_path / "r.sqlite", retrieval=down) as bot:
        await bot.client.event(mention(QUESTION), "EvDown")
        update = (await bot.slack.wait_for("chat.update"))[0]
        assert ":warning:" in update.args["text"] or "degraded" in json.dumps(update.args["blocks"])
        metrics = await (await bot.http.get(f"{bot.url}/metrics")).text()
        health = await bot.http.get(f"{bot.url}/healthz")
        assert health.status == 503 and "failing" in (await health.json())["checks"]["index"]
        assert "opsflow_answers_total" in metrics


async def test_a_retry_arriving_after_a_restart_is_not_answered_again(sample_kb: Settings, tmp_path: Path) -> None:
    records = tmp_path / "r.sqlite"
    async with running_bot(sample_kb, records) as bot:
        await answered(bot, "EvRestart")
    async with running_bot(sample_kb, records) as bot:
        again = await bot.client.event(mention(QUESTION), "EvRestart", **{"X-Slack-Retry-Num": "2"})
        assert again.status == 200
        await asyncio.sleep(0.5)
        assert not bot.slack.of("chat.postMessage")


async def test_status_says_what_the_bot_knows_and_which_models_serve(bot: RunningBot) -> None:
    assert (await bot.client.command("status", user="U1")).status == 200
    reply = (await bot.slack.wait_for("response_url"))[0]
    assert "opsflow knows" in reply.args["text"] and "documents" in reply.args["text"]
    assert "planner:" in reply.args["text"]
