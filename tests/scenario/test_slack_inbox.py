"""The Slack inbox (issue 11): a question is written durably before Slack gets its 200, marked answered
once the card is up, and a question a stopped replica left unanswered is answered by the next start.
The real bot over the sample knowledge base, its SQLite record store, the loopback Slack fake."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import update

from bot.records import BotRecords, InboxMessage
from bot.threads import PLACEHOLDER
from core.settings import Settings
from tests.botharness import running_bot

QUESTION = "pods keep restarting with CrashLoopBackOff, what do I do?"


def mention(ts: str, channel: str = "C1") -> dict[str, Any]:
    return {"type": "app_mention", "user": "U1", "channel": channel, "ts": ts, "text": f"<@UBOT> {QUESTION}"}


async def test_a_question_is_acknowledged_only_once_it_is_in_the_inbox(sample_kb: Settings, tmp_path: Path) -> None:
    records = tmp_path / "records.sqlite"
    async with running_bot(sample_kb, records) as bot:
        response = await bot.client.event(mention("10.1"), "EvKept")
        assert response.status == 200
        await bot.slack.wait_for("chat.update", channel="C1")
        row = await bot.bot.kb.records.transaction(lambda s: s.get(InboxMessage, "T1:C1:10.1"))
        assert row is not None and row.event["ts"] == "10.1"
        for _ in range(50):  # marked just after the card is shown
            row = await bot.bot.kb.records.transaction(lambda s: s.get(InboxMessage, "T1:C1:10.1"))
            if row is not None and row.answered_at is not None:
                break
            await asyncio.sleep(0.1)
        assert row is not None and row.answered_at is not None

        def break_the_inbox() -> None:
            with sqlite3.connect(records) as db:
                db.execute("DROP TABLE slack_inbox")

        await asyncio.to_thread(break_the_inbox)
        calls = len(bot.slack.calls)
        refused = await bot.client.event(mention("10.2"), "EvRefused")
        assert refused.status == 503  # not acknowledged: Slack sends it again, to this or another replica
        await asyncio.sleep(1)
        assert not [c for c in bot.slack.calls[calls:] if c.method == "chat.postMessage"]


async def test_a_question_a_stopped_replica_left_is_answered_at_the_next_start(
    sample_kb: Settings, tmp_path: Path
) -> None:
    records = tmp_path / "records.sqlite"
    store = BotRecords(f"sqlite:///{records}")
    left, answered, in_hand = "T1:C1:20.1", "T1:C1:20.2", "T1:C1:20.3"
    try:
        await store.write_inbox({left: mention("20.1"), answered: mention("20.2"), in_hand: mention("20.3")}, ())
        await store.write_inbox({}, [answered])
        an_hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        await store.transaction(
            lambda s: s.execute(
                update(InboxMessage).where(InboxMessage.key.in_([left, answered])).values(taken_at=an_hour_ago)
            )
        )
    finally:
        await store.aclose()
    async with running_bot(sample_kb, records) as bot:
        (placeholder,) = await bot.slack.wait_for("chat.postMessage", channel="C1", thread_ts="20.1")
        assert placeholder.args["text"] == PLACEHOLDER
        await bot.slack.wait_for("chat.update", channel="C1")
        await asyncio.sleep(1)
        threads = {c.args.get("thread_ts") for c in bot.slack.calls if c.method == "chat.postMessage"}
        assert threads == {"20.1"}  # not the answered one, nor the one a live replica is still answering
