"""Field faults of the Slack side, by kind: each field case replayed as written, and other instances of its kind.

Kinds (issue 11): 1 duplicates keyed by the message, not the delivery; 2 subtypes of people's messages
answered, everything else ignored and logged; 3 answers where the bot may not post go to the command's
``response_url``; 5 outside text is inert in Slack; 9 a failure mid-answer replaces the placeholder with
a note; 10 abstentions say why once, and the README's sample question gets a workflow.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.threads import PLACEHOLDER
from core.settings import Settings
from tests.botharness import RunningBot, running_bot
from trainer.store import Interaction

FIELD = Path(__file__).resolve().parents[3] / "shared" / "field"
README = Path(__file__).resolve().parents[2] / "README.md"
QUESTION = "pods keep restarting with CrashLoopBackOff, what do I do?"


@pytest.fixture
async def bot(sample_kb: Settings, tmp_path: Path) -> Any:
    async with running_bot(sample_kb, tmp_path / "records.sqlite") as running:
        yield running


async def replay(bot: RunningBot, name: str) -> list[dict[str, Any]]:
    """Send a field case's requests in order, signed, with their extra headers; returns its events."""
    case = json.loads((FIELD / name).read_text())
    for request in case["requests"]:
        assert request["kind"] == "event"
        response = await bot.client.send(json.dumps(request["body"]), "application/json", **request["headers"])
        assert response.status == 200
    return [r["body"]["event"] for r in case["requests"]]


async def settled(bot: RunningBot, seconds: float = 1.0) -> None:
    """Let anything the bot would still do arrive (used only to show that nothing more comes)."""
    await asyncio.sleep(seconds)


def dm(text: str, ts: str, **extra: Any) -> dict[str, Any]:
    return {"type": "message", "channel_type": "im", "channel": "D1", "user": "U1", "text": text, "ts": ts, **extra}


# -- kind 1: one answer per message ---------------------------------------------------------------


async def test_field_02_an_edited_mention_is_answered_once(bot: RunningBot) -> None:
    first, _ = await replay(bot, "02-slack-edited-mention.json")
    await bot.slack.wait_for("chat.update")
    await settled(bot)
    posts = bot.slack.of("chat.postMessage")
    assert [(c.args["channel"], c.args["thread_ts"]) for c in posts] == [(first["channel"], first["ts"])]
    assert len(bot.slack.of("chat.update")) == 1


async def test_an_edited_dm_arrives_as_message_changed_and_is_not_answered_again(bot: RunningBot) -> None:
    await bot.client.event(dm(QUESTION, "7.1"), "EvDm1")
    await bot.slack.wait_for("chat.update")
    changed = {
        "type": "message",
        "subtype": "message_changed",
        "channel_type": "im",
        "channel": "D1",
        "ts": "7.9",
        "message": {"type": "message", "user": "U1", "text": QUESTION + " (edited)", "ts": "7.1"},
        "previous_message": {"type": "message", "user": "U1", "text": QUESTION, "ts": "7.1"},
    }
    await bot.client.event(changed, "EvDm2")
    await bot.client.event(dm(QUESTION + " again", "7.1", edited={"user": "U1", "ts": "7.5"}), "EvDm3")
    await settled(bot)
    assert len(bot.slack.of("chat.postMessage")) == 1


# -- kind 2: people's messages with a subtype are questions ----------------------------------------


async def test_field_03_a_dm_with_a_screenshot_is_answered_in_the_dm(bot: RunningBot) -> None:
    (event,) = await replay(bot, "03-slack-dm-file-share.json")
    placeholder = (await bot.slack.wait_for("chat.postMessage"))[0]
    assert (placeholder.args["channel"], placeholder.args["thread_ts"]) == (event["channel"], event["ts"])
    card = (await bot.slack.wait_for("chat.update"))[0]
    assert card.args["channel"] == event["channel"] and card.args["text"] != PLACEHOLDER
    interaction = await bot.bot.kb.records.interaction_at(event["channel"], card.args["ts"])
    assert interaction is not None and interaction.query == event["text"]


async def test_a_thread_broadcast_dm_is_answered(bot: RunningBot) -> None:
    await bot.client.event(dm(QUESTION, "8.2", subtype="thread_broadcast", thread_ts="8.1"), "EvCast")
    placeholder = (await bot.slack.wait_for("chat.postMessage"))[0]
    assert placeholder.args["thread_ts"] == "8.1"


async def test_what_is_not_a_persons_message_is_ignored_and_logged(
    bot: RunningBot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.slack")
    await bot.client.event(dm(QUESTION, "9.1", subtype="bot_message", bot_id="B9", user=None), "EvBotMsg")
    await bot.client.event(dm("<@U1> has joined the channel", "9.2", subtype="channel_join"), "EvJoin")
    await bot.client.event(dm(QUESTION, "9.3", bot_id="B9"), "EvBotId")
    await settled(bot, 0.5)
    assert not bot.slack.of("chat.postMessage")
    ignored = [r for r in caplog.records if r.getMessage() == "not a person's message; ignored"]
    assert sorted(getattr(r, "subtype", "") for r in ignored) == ["bot_message", "bot_message", "channel_join"]


async def test_a_mention_with_a_file_in_a_channel_is_answered(bot: RunningBot) -> None:
    mention = {
        "type": "app_mention",
        "user": "U1",
        "channel": "C1",
        "ts": "10.1",
        "text": f"<@UBOT> {QUESTION}",
        "files": [{"id": "F1", "name": "pods.png", "mimetype": "image/png"}],
    }
    await bot.client.event(mention, "EvFile")
    assert (await bot.slack.wait_for("chat.update"))[0].args["channel"] == "C1"


# -- kind 3: where the bot may not post --------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "error", "why"),
    [("GPRIVATE", "not_in_channel", "not a member"), ("DTWOPEOPLE", "channel_not_found", "can't see")],
)
async def test_a_command_where_the_bot_may_not_post_is_answered_through_the_response_url(
    bot: RunningBot, channel: str, error: str, why: str
) -> None:
    bot.slack.refuse_posts(channel, error)
    ack = await bot.client.command(f"ask {QUESTION}", user="U1", channel=channel)
    assert "Looking into" in await ack.text()
    note, card = await bot.slack.wait_for("response_url", count=2)
    assert why in note.args["text"] and note.args["response_type"] == "ephemeral"
    assert card.args["replace_original"] is True and card.args["blocks"][0]["type"] == "header"
    assert "KubePodCrashLooping" in json.dumps(card.args["blocks"])
    (answer,) = await bot.bot.kb.records.transaction(
        lambda s: list(s.scalars(select(Interaction).where(Interaction.channel == channel)))
    )
    assert answer.message_ts is None and not answer.abstained, "recorded, though no message of the bot shows it"


async def test_a_refused_mention_leaves_no_answer_hanging(bot: RunningBot) -> None:
    bot.slack.refuse_posts("CARCHIVED", "is_archived")
    await bot.client.event(
        {"type": "app_mention", "user": "U1", "channel": "CARCHIVED", "ts": "11.1", "text": QUESTION}, "EvArch"
    )
    await bot.slack.wait_for("chat.postMessage")
    await settled(bot, 0.5)
    assert not bot.slack.of("chat.update")
    metrics = await (await bot.http.get(f"{bot.url}/metrics")).text()
    assert 'opsflow_slack_api_errors_total{error="is_archived",method="chat.postMessage"} 1.0' in metrics


# -- kind 9: failures replace the placeholder -----------------------------------------------------


async def test_a_record_store_failing_mid_answer_replaces_the_placeholder_with_a_note(
    sample_kb: Settings, tmp_path: Path
) -> None:
    records = tmp_path / "records.sqlite"
    async with running_bot(sample_kb, records) as bot:
        await bot.bot.kb.records.audit("test", "open")  # the database exists, with its tables

        def break_the_store() -> None:
            with sqlite3.connect(records) as db:
                db.execute("DROP TABLE feedback")
                db.execute("DROP TABLE interactions")

        await asyncio.to_thread(break_the_store)
        await bot.client.event(
            {"type": "app_mention", "user": "U1", "channel": "C1", "ts": "12.1", "text": QUESTION}, "EvBroken"
        )
        placeholder = (await bot.slack.wait_for("chat.postMessage"))[0]
        note = (await bot.slack.wait_for("chat.update"))[0]
        assert placeholder.args["text"] == PLACEHOLDER
        assert [note.args["ts"]] == [ts for (channel, ts) in bot.slack.messages if channel == "C1"]
        assert note.args["text"].startswith(":warning: I could not answer this time: record store unreachable")


async def test_a_listener_that_fails_reaches_the_one_catch_all_and_is_logged(
    bot: RunningBot, caplog: pytest.LogCaptureFixture
) -> None:
    forged = {
        "type": "view_submission",
        "user": {"id": "U2"},
        "view": {"id": "V1", "type": "modal", "callback_id": "downvote_reason", "private_metadata": "not-an-answer"},
    }
    response = await bot.client.interaction(forged)
    assert response.status == 500
    failed = [r for r in caplog.records if r.getMessage() == "slack listener failed"]
    assert failed and failed[0].exc_info is not None and failed[0].exc_info[0] is ValueError


# -- kind 5: outside text is inert in Slack -------------------------------------------------------

RUNBOOK = """# Disk full on db-1 & <friends>

## Diagnosis

1. Check the usage with `df -h`, then tell <!here> and <@U0BOSS> what you see.
2. Look for old dumps under /var/backups <older than 7 days> & large logs.

## Mitigation

1. Remove the dumps <!channel> does not need any more.
2. Restart the <svc> service with `systemctl restart postgresql`.
"""


async def test_runbook_text_reaches_slack_escaped(settings: Settings, tmp_path: Path) -> None:
    from bot.app import open_knowledge
    from bot.ingest import ingest

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "disk-full.md").write_text(RUNBOOK)
    async with open_knowledge(settings) as kb:
        await ingest([docs], kb.builder, max_bytes=settings.ingest.max_document_bytes)
    async with running_bot(settings, tmp_path / "r.sqlite") as bot:
        await bot.client.event(
            {"type": "app_mention", "user": "U1", "channel": "C1", "ts": "13.1", "text": "disk full on db-1"}, "EvEsc"
        )
        card = (await bot.slack.wait_for("chat.update"))[0]
    shown = json.dumps(card.args["blocks"]) + card.args["text"]
    assert "&lt;@U0BOSS&gt;" in shown, "the runbook's text is on the card, escaped"
    for raw in ("<!here>", "<!channel>", "<@U0BOSS>", "<friends>", "<svc>"):
        assert raw not in shown


async def test_a_command_echoes_what_was_asked_without_pinging_anyone(bot: RunningBot) -> None:
    ack = await (await bot.client.command(f"ask <!here> <@U0BOSS> {QUESTION}", user="U1")).text()
    unknown = await (await bot.client.command("<!channel>", user="U1")).text()
    assert "&lt;!here&gt; &lt;@U0BOSS&gt;" in ack and "<!here>" not in ack and "<@U0BOSS>" not in ack
    assert "&lt;!channel&gt;" in unknown and "<!channel>" not in unknown


# -- kind 10: abstentions say why once; the README's question gets a workflow ---------------------


async def test_an_abstention_says_no_runbook_matches_once(bot: RunningBot) -> None:
    await bot.client.event(
        {"type": "app_mention", "user": "U1", "channel": "C1", "ts": "14.1", "text": "how do I bake sourdough bread?"},
        "EvBread",
    )
    card = (await bot.slack.wait_for("chat.update"))[0]
    assert card.args["text"].lower().count("no runbook matches") == 1
    assert json.dumps(card.args["blocks"]).lower().count("no runbook matches") == 1


async def test_the_readme_sample_question_gets_a_workflow(bot: RunningBot) -> None:
    line = next(line for line in README.read_text().splitlines() if 'opsflow ask "' in line and "# a workflow" in line)
    question = line.split('"')[1]
    await bot.client.event({"type": "app_mention", "user": "U1", "channel": "C1", "ts": "15.1", "text": question}, "Ev")
    card = (await bot.slack.wait_for("chat.update"))[0]
    interaction = await bot.bot.kb.records.interaction_at("C1", card.args["ts"])
    assert interaction is not None and not interaction.abstained, card.args["text"]
    assert "Replication" in json.dumps(card.args["blocks"])
