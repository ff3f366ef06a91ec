"""Alert webhooks → Slack threads, over real HTTP against the running bot and a loopback Slack."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.alerting import thread_key
from bot.records import AlertThread
from connectors.alerts import parse_alertmanager
from core.settings import Settings
from tests.botharness import ALERT_TOKEN, RunningBot, running_bot

AUTH = {"Authorization": f"Bearer {ALERT_TOKEN}"}


def alertmanager(group: str, status: str = "firing", *, fingerprint: str = "fp1", team: str = "") -> dict[str, Any]:
    labels = {
        "alertname": "KubePodCrashLooping",
        "severity": "critical",
        "namespace": "shop",
        **({"team": team} if team else {}),
    }
    return {
        "version": "4",
        "groupKey": group,
        "status": status,
        "receiver": "opsflow",
        "groupLabels": {"alertname": "KubePodCrashLooping"},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.local",
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": {"summary": "Pod shop/cart-7d9 is crash looping"},
                "startsAt": "2026-11-22T05:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-22T05:10:00Z",
                "generatorURL": "http://prometheus.local/graph",
                "fingerprint": fingerprint,
            }
        ],
    }


@pytest.fixture
async def bot(sample_kb: Settings, tmp_path: Path) -> Any:
    async with running_bot(sample_kb, tmp_path / "records.sqlite") as running:
        yield running


async def threads(bot: RunningBot) -> list[AlertThread]:
    """Every alert thread the bot saved, oldest first."""
    query = select(AlertThread).order_by(AlertThread.created_at)
    return await bot.bot.kb.records.transaction(lambda s: list(s.scalars(query)))


def key_of(payload: dict[str, Any], channel: str = "CALERTS") -> str:
    return thread_key(parse_alertmanager(payload)[0], channel)


async def send(bot: RunningBot, payload: Any, source: str = "alertmanager", **headers: str) -> Any:
    body = io.BytesIO(payload if isinstance(payload, bytes) else json.dumps(payload).encode())
    return await bot.http.post(f"{bot.url}/alerts/{source}", data=body, headers={**AUTH, **headers})


async def test_a_firing_alert_opens_one_thread_answered_with_a_workflow(bot: RunningBot) -> None:
    response = await send(bot, alertmanager('{}:{alertname="KubePodCrashLooping"}'))
    assert response.status == 200 and (await response.json()) == {"stored": 1}
    await bot.bot.alerts.idle()

    posts = bot.slack.of("chat.postMessage")
    assert posts[0].args["channel"] == "CALERTS" and "thread_ts" not in posts[0].args
    assert "KubePodCrashLooping" in posts[0].args["text"] and "firing" in posts[0].args["text"]
    (thread,) = await threads(bot)
    thread_ts = thread.thread_ts
    # No placeholder for an alert: the workflow card is the thread's first reply.
    card = posts[1]
    assert len(posts) == 2 and card.args["thread_ts"] == thread_ts and not bot.slack.of("chat.update")
    assert card.args["blocks"][0]["type"] == "header" and "run_checks" in json.dumps(card.args["blocks"])
    history = await bot.bot.kb.records.thread_history("CALERTS", thread_ts)
    assert history[0].origin == "alert" and history[0].alert_group is not None
    assert history[0].message_ts is not None  # reactions on the card count as votes


async def test_repeats_update_nothing_and_resolve_marks_the_thread(bot: RunningBot) -> None:
    group = "g-repeat"
    for _ in range(5):
        assert (await send(bot, alertmanager(group))).status == 200
    await bot.bot.alerts.idle()
    roots = [c for c in bot.slack.of("chat.postMessage") if "thread_ts" not in c.args]
    assert len(roots) == 1
    calls_before = len(bot.slack.calls)

    assert (await send(bot, alertmanager(group, "resolved"))).status == 200
    await bot.bot.alerts.idle()
    new = bot.slack.calls[calls_before:]
    updates = [c for c in new if c.method == "chat.update"]
    assert "✅" in updates[0].args["text"] or ":white_check_mark:" in updates[0].args["text"]
    assert any("Resolved" in c.args.get("text", "") for c in new if c.method == "chat.postMessage")
    assert [t.status for t in await threads(bot)] == ["resolved"]

    # Firing again straight after resolving is flapping: the card says so, the thread gets no new message.
    before = len(bot.slack.of("chat.postMessage"))
    await send(bot, alertmanager(group))
    await bot.bot.alerts.idle()
    assert len(bot.slack.of("chat.postMessage")) == before
    assert "flapping" in bot.slack.of("chat.update")[-1].args["text"]


async def test_routes_pick_the_channel_by_labels(sample_kb: Settings, tmp_path: Path) -> None:
    routes = ({"match": {"team": "db"}, "channel": "CDB"},)
    async with running_bot(sample_kb, tmp_path / "r.sqlite", alerts={"routes": routes, "answer": False}) as bot:
        await send(bot, alertmanager("g-db", team="db"))
        await send(bot, alertmanager("g-other", team="web"))
        await bot.bot.alerts.idle()
        assert sorted(c.args["channel"] for c in bot.slack.of("chat.postMessage")) == ["CALERTS", "CDB"]


async def test_wrong_credentials_and_bad_payloads_are_refused_clearly(bot: RunningBot) -> None:
    wrong = await send(bot, alertmanager("g"), Authorization="Bearer nope")
    missing = await bot.http.post(f"{bot.url}/alerts/generic", json={"name": "x", "status": "firing"})
    not_json = await send(bot, b"\x89PNG\r\n\x1a\n")
    invalid = await send(bot, {"alerts": "many"})
    too_big = await send(bot, b"{" + b" " * (2 * 1024 * 1024) + b"}")
    unsigned = await send(bot, {"event": {}}, "pagerduty")
    assert [r.status for r in (wrong, missing, not_json, invalid, too_big, unsigned)] == [401, 401, 400, 400, 413, 401]
    assert "groupKey" in (await invalid.json())["error"]
    assert not await bot.bot.kb.records.unposted_alerts() and not bot.slack.of("chat.postMessage")


async def test_overload_answers_503_and_keeps_what_it_accepted(sample_kb: Settings, tmp_path: Path) -> None:
    async with running_bot(sample_kb, tmp_path / "r.sqlite", alerts={"queue_size": 2, "answer": False}) as bot:
        bot.slack.rate_limit("chat.postMessage", 1)  # the first post waits out a 429: the queue fills meanwhile
        statuses = [(await send(bot, alertmanager(f"g{i}", fingerprint=f"f{i}"))).status for i in range(4)]
        assert statuses[:2] == [200, 200] and 503 in statuses[2:]
        await bot.bot.alerts.idle()
        saved = [await bot.bot.kb.records.alert_thread(key_of(alertmanager(f"g{i}"))) for i in range(4)]
        assert [t is not None for t in saved] == [s == 200 for s in statuses]


async def test_alerts_stored_before_a_restart_are_posted_after_it(sample_kb: Settings, tmp_path: Path) -> None:
    records = tmp_path / "r.sqlite"
    async with running_bot(sample_kb, records, alerts={"answer": False}) as bot:
        bot.slack.rate_limit("chat.postMessage", 100)  # Slack is refusing everything: nothing gets posted
        assert (await send(bot, alertmanager("g-restart"))).status == 200
        await asyncio.sleep(0.2)
    async with running_bot(sample_kb, records, alerts={"answer": False}) as bot:
        await bot.bot.alerts.idle()
        assert [c.args["channel"] for c in bot.slack.of("chat.postMessage")] == ["CALERTS"]
        assert not await bot.bot.kb.records.unposted_alerts()
