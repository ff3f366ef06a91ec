"""A real alert source end to end: Prometheus fires a rule, Alertmanager calls the bot, a thread appears;
the rule stops firing and the same thread is marked resolved."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select

from bot.records import AlertThread
from core.settings import Settings
from tests.botharness import ALERT_TOKEN, RunningBot, running_bot
from tests.promstack import alertmanager, metrics_endpoint, off_loop, prometheus


def first_ts(bot: RunningBot) -> str:
    return sorted(ts for (_, ts) in bot.slack.messages)[0]


RULES = """
groups:
  - name: opsflow-scenario
    rules:
      - alert: KubePodCrashLooping
        expr: opsflow_test_restarts > 1
        for: 0s
        labels:
          severity: critical
        annotations:
          summary: "Pod shop/cart is restarting ({{ $value }} restarts)"
"""


async def test_prometheus_rule_to_alertmanager_to_a_slack_thread_and_back(sample_kb: Settings, tmp_path: Path) -> None:
    async with running_bot(sample_kb, tmp_path / "records.sqlite") as bot:
        hook = f"{bot.url}/alerts/alertmanager"
        async with (
            off_loop(metrics_endpoint()) as metrics,
            off_loop(alertmanager(tmp_path, webhook_url=hook, bearer_token=ALERT_TOKEN, resolve_timeout="10s")) as am,
            off_loop(prometheus(tmp_path, scrape_targets=[metrics.target], rules_yaml=RULES, alertmanager_url=am.url)),
        ):
            metrics.set("opsflow_test_restarts", 5)
            first = (await bot.slack.wait_for("chat.postMessage", within=40))[0]
            assert first.args["channel"] == "CALERTS" and "KubePodCrashLooping — firing" in first.args["text"]
            answer = (await bot.slack.wait_for("chat.postMessage", count=2, within=30))[1]
            assert answer.args["thread_ts"] == first_ts(bot) and answer.args["blocks"][0]["type"] == "header"

            metrics.set("opsflow_test_restarts", 0)
            for _ in range(80):
                updates = [c for c in bot.slack.of("chat.update") if "resolved" in c.args.get("text", "")]
                if updates:
                    break
                await asyncio.sleep(0.5)
            assert updates, "the thread was not marked resolved"
            threads = {c.args["ts"] for c in updates}
            for _ in range(40):  # the card is updated before the thread's row is saved: give the save a moment
                saved = await bot.bot.kb.records.transaction(lambda s: list(s.scalars(select(AlertThread))))
                if [t.status for t in saved] == ["resolved"]:
                    break
                await asyncio.sleep(0.25)
            assert [(t.status, t.thread_ts) for t in saved] == [("resolved", *threads)]
            assert saved[0].group_key.endswith(' {}:{alertname="KubePodCrashLooping"}')  # scoped by sender and channel
            parents = [c for c in bot.slack.of("chat.postMessage") if "thread_ts" not in c.args]
            assert len(parents) == 1, "one thread per alert group"
