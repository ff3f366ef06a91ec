"""Two bot replicas on one record database, behind one (loopback) Slack: every alert group gets one thread,
whichever replica each notification reaches; and a crash between posting a thread and saving it does not
post it twice after the restart."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select

from bot import alert_cards, alert_groups
from bot.alerting import thread_key
from bot.app import Bot, build_bot, open_knowledge
from bot.records import AlertRecord, AlertThread, BotRecords
from bot.server import running
from connectors.alerts import parse_alertmanager
from core.settings import Settings
from tests.botharness import ALERT_TOKEN, BOT_TOKEN, bot_settings
from tests.fakes.slack import FakeSlack, fake_slack
from tests.scenario.test_alerts import alertmanager
from trainer.schedules import Leases

AUTH = {"Authorization": f"Bearer {ALERT_TOKEN}"}


@dataclass
class Replica:
    bot: Bot
    url: str


@asynccontextmanager
async def replicas(
    kb: Settings, slack: FakeSlack, records_url: str, n: int, **alerts: Any
) -> AsyncIterator[list[Replica]]:
    """``n`` bots serving on loopback ports, sharing the record database and the fake Slack."""
    async with AsyncExitStack() as stack:
        served = []
        for _ in range(n):
            settings = bot_settings(kb, Path("unused"), slack.url, alerts=alerts)
            settings = settings.model_copy(update={"records": settings.records.model_copy(update={"url": records_url})})
            knowledge = await stack.enter_async_context(open_knowledge(settings))
            bot = await asyncio.to_thread(build_bot, settings, knowledge)
            served.append(Replica(bot, await stack.enter_async_context(running(bot, "127.0.0.1", 0))))
        yield served


def roots(slack: FakeSlack) -> list[str]:
    """The channel of every top-level message (a thread's first) posted so far."""
    return [str(c.args["channel"]) for c in slack.of("chat.postMessage") if not c.args.get("thread_ts")]


async def saved_threads(records: BotRecords) -> list[AlertThread]:
    return await records.transaction(lambda s: list(s.scalars(select(AlertThread))))


@pytest.mark.parametrize("records_url", ["sqlite", "postgresql"], indirect=True)
async def test_two_replicas_post_one_thread_per_group_whichever_gets_the_notifications(
    sample_kb: Settings, records_url: str
) -> None:
    groups = [f'{{}}:{{alertname="KubePodCrashLooping", namespace="team-{g}"}}' for g in range(12)]
    async with fake_slack() as slack, replicas(sample_kb, slack, records_url, 2, answer=False) as (a, b):
        async with aiohttp.ClientSession() as http:

            async def sender(group: str, index: int) -> None:
                for i in range(6):  # alerts join the group, each notification to the other replica
                    target = (a, b)[(index + i) % 2]
                    payload = alertmanager(group, fingerprint=f"fp{i}")
                    payload["alerts"] = [alertmanager(group, fingerprint=f"fp{j}")["alerts"][0] for j in range(i + 1)]
                    async with http.post(f"{target.url}/alerts/alertmanager", json=payload, headers=AUTH) as r:
                        assert r.status == 200

            await asyncio.gather(*(sender(group, g) for g, group in enumerate(groups)))
        await asyncio.gather(a.bot.alerts.idle(), b.bot.alerts.idle())
        await asyncio.gather(a.bot.alerts.idle(), b.bot.alerts.idle())  # what one left while the other held it
        records = a.bot.kb.records
        assert roots(slack) == ["CALERTS"] * len(groups), "one thread per group, posted once"
        threads = await saved_threads(records)
        assert sorted(t.group_key for t in threads) == sorted(
            thread_key(parse_alertmanager(alertmanager(g))[0], "CALERTS") for g in groups
        )
        assert {len(t.firing) for t in threads} == {6}
        assert await records.unposted_alerts() == []
        assert a.bot.alerts.backlog == b.bot.alerts.backlog == 0


async def crashed_while_opening(records_url: str, slack: FakeSlack, *, posted: bool) -> tuple[str, str | None]:
    """The state a replica leaves when it dies after recording a thread's intent, and (``posted``) after
    Slack took the thread but before it was saved. Returns the group's key and the thread's ts."""
    payload = alertmanager("g-crash")
    (alert,) = parse_alertmanager(payload)
    key = thread_key(alert, "CALERTS")
    records = BotRecords(records_url)
    try:
        await records.add_alerts(
            [AlertRecord(source=alert.source, fingerprint=alert.fingerprint, group_key=key, status=alert.status,
                         alert=alert.model_dump(mode="json"))]
        )  # fmt: skip
        # It held the group's lease; the lease ran out since (the restart came later than that).
        assert await Leases(records, "dead-replica").acquire(alert_groups.lease_name(key), dt.timedelta(0))
        token = uuid.uuid4().hex
        await alert_groups.intend(records, key, token, "CALERTS")
    finally:
        await records.aclose()
    if not posted:
        return key, None
    text, blocks = alert_cards.card([alert], {alert.fingerprint: alert_cards.line(alert, {})})
    blocks[0]["block_id"] = alert_groups.header_block_id(token)
    client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.url)
    reply = await client.chat_postMessage(channel="CALERTS", text=text, blocks=blocks)
    return key, str(reply["ts"])


@pytest.mark.parametrize("records_url", ["sqlite", "postgresql"], indirect=True)
async def test_a_thread_posted_but_not_saved_before_a_crash_is_adopted_not_posted_again(
    sample_kb: Settings, records_url: str
) -> None:
    async with fake_slack() as slack:
        key, ts = await crashed_while_opening(records_url, slack, posted=True)
        async with replicas(sample_kb, slack, records_url, 1) as (restarted,):
            await restarted.bot.alerts.idle()
            records = restarted.bot.kb.records
            assert roots(slack) == ["CALERTS"], "the thread was not posted a second time"
            thread = await records.alert_thread(key)
            assert thread is not None and thread.thread_ts == ts and await records.unposted_alerts() == []
            (card,) = slack.of("chat.update")  # brought up to date
            assert card.args["ts"] == ts
            workflow = [c for c in slack.of("chat.postMessage") if c.args.get("thread_ts") == ts]
            assert len(workflow) == 1 and workflow[0].args["blocks"][0]["type"] == "header"


async def test_a_thread_intended_but_never_posted_before_a_crash_is_posted_once(
    sample_kb: Settings, records_url: str
) -> None:
    async with fake_slack() as slack:
        key, _ = await crashed_while_opening(records_url, slack, posted=False)
        async with replicas(sample_kb, slack, records_url, 1, answer=False) as (restarted,):
            await restarted.bot.alerts.idle()
            assert roots(slack) == ["CALERTS"] and not slack.of("chat.update")
            thread = await restarted.bot.kb.records.alert_thread(key)
            assert thread is not None and thread.status == "firing"
