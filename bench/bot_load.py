"""The bot under load: Slack mentions (ack, placeholder and answer latency), an Alertmanager storm, memory.

The bot runs as ``opsflow serve`` in a child process over a knowledge base built from samples/runbooks.
There is no Slack here: the Web API is the loopback fake of the tests (tests/fakes/slack.py), which
answers at once and records every call with its time. So the numbers are the bot's own work plus
loopback HTTP, and the Slack rates below are what the bot *sends*; real Slack would add its latency
and answer 429 beyond its tiers.

    .venv/bin/python -m bench.bot_load [--quick] [--rounds 3] [--answer both|on|off]

1. Mentions: rounds of 50 concurrent signed ``app_mention`` events, each in its own channel, then one
   round of 50 in a single channel. Ack = request sent → HTTP response; placeholder = request sent →
   the fake receives the placeholder's chat.postMessage; answer = → the chat.update with the card.
2. Alert storm: 1,000 Alertmanager notifications in 60 s over 50 groups (bench/_alertstorm.py), 503s
   resent after Retry-After. Checked: every alert of every accepted notification is stored, none is
   left unposted, exactly one thread per group, each thread's final state is the group's last one.
3. Memory: the bot's VmRSS after start, after the first answer, and the peak sampled in each phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
from sqlalchemy import select

from bench import _alertstorm
from bench._botprocess import BotProcess, bot_process
from bench._common import ROOT, summary
from bot.app import open_knowledge
from bot.ingest import ingest
from bot.slack import PLACEHOLDER
from core.settings import Settings
from retrieval.embedding import OnnxEmbedder
from tests.botharness import ALERT_TOKEN, BOT_TOKEN, SECRET, SlackClient
from tests.fakes.slack import FakeSlack, fake_slack
from trainer.store import AlertRecord, AlertThread, RecordStore

QUESTIONS = (
    "pods keep restarting with CrashLoopBackOff, what do I do?",
    "a node is NotReady since the last kernel upgrade",
    "the container was OOMKilled twice this hour",
    "replication lag on the postgres standby keeps growing",
    "postgres refuses connections: too many clients already",
    "redis evicts keys and the hit rate dropped",
    "kafka consumer group lag is growing on billing",
    "rabbitmq queue backlog is over 80k messages",
    "CoreDNS returns SERVFAIL for internal names",
    "the ingress returns 5xx during the rollout",
    "the TLS certificate expires in three days",
    "the load balancer health checks fail on two backends",
)
CHANNEL = "CALERTS"


async def build_kb(data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir, _env_file=None)
    await OnnxEmbedder(data_dir / "models").embed(["export once"])
    async with open_knowledge(settings) as kb:
        report = await ingest([ROOT / "samples" / "runbooks"], kb.builder, max_bytes=settings.ingest.max_document_bytes)
    if report.failed:
        raise SystemExit(f"sample runbooks failed to ingest: {report.failed}")


def bot_env(data_dir: Path, records: Path, slack_url: str, *, answer: bool) -> dict[str, str]:
    return {
        "OPSFLOW_DATA_DIR": str(data_dir),
        "OPSFLOW_RECORDS__URL": f"sqlite:///{records}",
        "OPSFLOW_SLACK__BOT_TOKEN": BOT_TOKEN,
        "OPSFLOW_SLACK__SIGNING_SECRET": SECRET,
        "OPSFLOW_SLACK__API_URL": slack_url,
        "OPSFLOW_ALERTS__TOKEN": ALERT_TOKEN,
        "OPSFLOW_ALERTS__DEFAULT_CHANNEL": CHANNEL,
        "OPSFLOW_ALERTS__ANSWER": "true" if answer else "false",
    }


# -- mentions ---------------------------------------------------------------------------------------


async def mention(
    client: SlackClient, slack: FakeSlack, channel: str, ts: str, event_id: str, question: str
) -> dict[str, float]:
    """One mention's ack, placeholder and answer times in ms."""
    event = {"type": "app_mention", "user": "U1", "text": f"<@UBOT> {question}", "ts": ts, "channel": channel}
    started = time.monotonic()
    response = await client.event(event, event_id)
    await response.read()
    acked = time.monotonic()
    if response.status != 200:
        raise SystemExit(f"mention refused: HTTP {response.status}")
    (placeholder,) = await slack.wait_for("chat.postMessage", within=300, channel=channel, thread_ts=ts)
    if placeholder.args.get("text") != PLACEHOLDER:
        raise SystemExit(f"expected the placeholder first, got {placeholder.args.get('text')!r}")
    posted_ts = next(
        key[1] for key, args in slack.messages.items() if key[0] == channel and args.get("thread_ts") == ts
    )
    (card,) = await slack.wait_for("chat.update", within=300, channel=channel, ts=posted_ts)
    return {
        "ack": (acked - started) * 1000,
        "placeholder": (placeholder.at - started) * 1000,
        "answer": (card.at - started) * 1000,
    }


async def mention_round(
    bot: BotProcess, slack: FakeSlack, http: aiohttp.ClientSession, n: int, tag: int, *, one_channel: bool
) -> dict[str, list[float]]:
    client = SlackClient(bot.url, http, slack.url)
    results = await asyncio.gather(
        *(
            mention(
                client,
                slack,
                "CLOAD" if one_channel else f"CINC{tag:02d}{i:03d}",
                f"{1_800_000_000 + tag * 1000 + i}.000100",
                f"Ev{tag}-{i}",
                QUESTIONS[i % len(QUESTIONS)],
            )
            for i in range(n)
        )
    )
    return {key: [r[key] for r in results] for key in ("ack", "placeholder", "answer")}


def _pct(values: list[float], q: int) -> float:
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 1)


def print_mentions(label: str, times: dict[str, list[float]]) -> None:
    ack, placeholder, answer = (times[k] for k in ("ack", "placeholder", "answer"))
    p = summary(placeholder)
    a = summary(answer)
    print(
        f"  {label}: ack p50 {_pct(ack, 50)} ms p99 {_pct(ack, 99)} ms max {max(ack):.1f} ms | "
        f"placeholder p50 {p['p50']:.0f} ms p95 {p['p95']:.0f} ms | answer p50 {a['p50']:.0f} ms p95 {a['p95']:.0f} ms"
    )


async def mentions(bot: BotProcess, slack: FakeSlack, rounds: int, n: int) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as http:
        await mention_round(bot, slack, http, 1, 99, one_channel=False)  # loads the embedding model
        print(f"bot memory after the first answer: VmRSS {bot.memory()['VmRSS']:.0f} MiB")
        bot.reset_peak()
        alone = [await mention_round(bot, slack, http, 1, 90 + i, one_channel=False) for i in range(5)]
        print_mentions("1 at a time (5 mentions), for reference", {k: [a[k][0] for a in alone] for k in alone[0]})
        print(f"mentions: {n} concurrent signed app_mention events per round (target: ack p99 <= 100 ms)")
        spread: dict[str, list[float]] = {"ack": [], "placeholder": [], "answer": []}
        for r in range(rounds):
            times = await mention_round(bot, slack, http, n, r, one_channel=False)
            print_mentions(f"round {r + 1}, {n} channels", times)
            for key in spread:
                spread[key] += times[key]
        print_mentions(f"all {rounds} rounds, {n} channels", spread)
        one = await mention_round(bot, slack, http, n, 50, one_channel=True)
        print_mentions(f"1 round, {n} in ONE channel", one)
        print(f"  bot peak VmRSS during the mentions: {bot.peak_rss:.0f} MiB")


# -- alert storm ------------------------------------------------------------------------------------


async def backlog_drained(http: aiohttp.ClientSession, url: str, within: float = 1800) -> float:
    """Wait until the bot reports no alert waiting to be posted; returns when (monotonic)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        async with http.get(f"{url}/healthz") as response:
            if (await response.json())["alert_backlog"] == 0:
                return time.monotonic()
        await asyncio.sleep(0.25)
    raise SystemExit("the alert backlog did not drain")


async def storm(bot: BotProcess, slack: FakeSlack, records_url: str, total: int, seconds: float, groups: int) -> None:
    storm_plan = _alertstorm.plan(total, groups, seconds)
    first_call = len(slack.calls)
    bot.reset_peak()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as http:
        sent = await _alertstorm.send(http, f"{bot.url}/alerts/alertmanager", ALERT_TOKEN, storm_plan)
        sent_s = time.monotonic() - sent.first_at
        drained = await backlog_drained(http, bot.url)
        await asyncio.sleep(2)  # anything a worker still had in hand reaches the fake
        metrics = await (await http.get(f"{bot.url}/metrics")).text()
    records = RecordStore(records_url)
    try:
        rows = await records.transaction(
            lambda s: [
                tuple(r) for r in s.execute(select(AlertRecord.group_key, AlertRecord.fingerprint, AlertRecord.status))
            ]
        )
        threads = await records.transaction(lambda s: list(s.scalars(select(AlertThread))))
        unposted = await records.unposted_alerts()
    finally:
        await records.aclose()

    expected = Counter((n.group, fp, status) for n in sent.accepted for fp, status in n.alerts)
    stored = Counter(rows)
    lost = sum((expected - stored).values())
    extra = sum((stored - expected).values())
    calls = slack.calls[first_call:]
    top_level = [c for c in calls if c.method == "chat.postMessage" and not c.args.get("thread_ts")]
    wrong_state = [t.group_key for t in threads if (t.status, frozenset(t.firing)) != storm_plan.final.get(t.group_key)]
    placeholders = [c for c in calls if c.method == "chat.postMessage" and c.args.get("text") == PLACEHOLDER]
    r = _alertstorm.rates(calls)
    refused = {
        line.split("}")[0] + "}": line.rsplit(" ", 1)[1]
        for line in metrics.splitlines()
        if line.startswith("opsflow_alerts_refused_total")
    }

    print(
        f"  sent {total} notifications ({sum(len(n.alerts) for n in storm_plan.notifications)} alerts) "
        f"to {groups} groups, planned over {seconds:.0f} s, took {sent_s:.1f} s"
    )
    print(
        f"  responses: {dict(sorted(sent.statuses.items()))}; accepted {len(sent.accepted)} notifications, "
        f"gave up on {len(sent.gave_up)}; bot counted refused: {refused or 'none'}"
    )
    print(
        f"  alerts: {sum(expected.values())} in accepted notifications, {len(rows)} stored, lost {lost}, "
        f"unexpected {extra}, left unposted {len(unposted)}"
    )
    print(
        f"  threads: {len(threads)} stored, {len(top_level)} top-level posts (expected {groups}); "
        f"final state wrong in {len(wrong_state)}; workflow placeholders {len(placeholders)}"
    )
    print(
        f"  drained {drained - sent.last_accepted_at:.1f} s after the last accepted notification "
        f"({drained - sent.first_at:.1f} s after the first was sent)"
    )
    print(f"  Slack Web API calls: {r['total']}")
    print(
        f"  busiest 60 s per method: {r['per_minute']}; chat.postMessage per channel: "
        f"max {r['post_per_s_per_channel']} in 1 s, min gap {r['min_post_gap_s']} s"
        "  (Slack: chat.postMessage ~1/s per channel, chat.update Tier 3 ~50/min)"
    )
    print(f"  bot peak VmRSS during the storm: {bot.peak_rss:.0f} MiB (VmHWM {bot.memory()['VmHWM']:.0f} MiB)")


# -- main -------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        started = time.perf_counter()
        await build_kb(scratch / "data")
        print(f"knowledge base: samples/runbooks ingested in {time.perf_counter() - started:.0f} s")
        print(
            "Slack here is the loopback fake Web API of the tests (tests/fakes/slack.py): no network, no Slack latency"
        )
        variants = {"both": (True, False), "on": (True,), "off": (False,)}[args.answer]
        for index, answer in enumerate(variants):
            async with fake_slack() as slack:
                records = scratch / f"records-{index}.sqlite"
                env = bot_env(scratch / "data", records, slack.url, answer=answer)
                async with bot_process(env, scratch, f"bot-{index}") as bot:
                    print(f"\n== bot pid {bot.pid}, alerts.answer={answer} ==")
                    print(f"bot memory after start: VmRSS {bot.memory()['VmRSS']:.0f} MiB")
                    if index == 0:
                        await mentions(bot, slack, args.rounds, args.mentions)
                    print(f"alert storm (alerts.answer={answer}):")
                    await storm(bot, slack, f"sqlite:///{records}", args.notifications, args.seconds, args.groups)
                    print(f"bot memory at the end: {json.dumps({k: round(v) for k, v in bot.memory().items()})} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 round of 20 mentions, 200 notifications in 12 s"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mentions", type=int, default=50)
    parser.add_argument("--notifications", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--answer", choices=("both", "on", "off"), default="both", help="alerts.answer for the storm")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress shows when piped
    if args.quick:
        args.rounds, args.mentions, args.notifications, args.seconds, args.answer = 1, 20, 200, 12.0, "on"
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
