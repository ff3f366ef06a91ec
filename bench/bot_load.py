"""The bot under load: Slack mentions (ack, placeholder and answer latency), an Alertmanager storm, memory;
with one bot process and with two replicas on one record database, side by side.

The bot runs as ``opsflow serve`` in child processes over a knowledge base built from samples/runbooks.
There is no Slack here: the Web API is the loopback fake of the tests (tests/fakes/slack.py), which
answers at once and records every call with its time. So the numbers are the bot's own work plus
loopback HTTP, and the Slack rates below are what the bot *sends*; real Slack would add its latency
and answer 429 beyond its tiers. The records live in a fresh PostgreSQL database on 127.0.0.1:5432
(``--database sqlite`` for a file; two replicas on SQLite share the file).

    .venv/bin/python -m bench.bot_load [--quick] [--replicas 1|2|both] [--rounds 3] [--answer both|on|off]

1. Mentions: rounds of 50 concurrent signed ``app_mention`` events, each in its own channel, then one
   round of 50 in a single channel, spread round-robin over the replicas. Ack = request sent → HTTP
   response; placeholder = request sent → the fake receives the placeholder's chat.postMessage;
   answer = → the chat.update with the card.
2. Alert storm: 1,000 Alertmanager notifications in 60 s over 50 groups (bench/_alertstorm.py); a
   group's notifications alternate between the replicas, and 503s are resent to the next one after
   Retry-After. Checked: every alert of every accepted notification is stored, none is left
   unposted, exactly one thread per group and no second top-level post, each thread's final state
   is the group's last one.
3. Memory: each bot's VmRSS after start, after the first answer, and the peak sampled in each phase.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import select

from bench import _alertstorm
from bench._botprocess import BotProcess, bot_process
from bench._common import ROOT, summary
from bot.alert_groups import unposted_count
from bot.alerting import thread_key
from bot.app import open_knowledge
from bot.ingest import ingest
from bot.records import AlertRecord, AlertThread, BotRecords
from bot.threads import PLACEHOLDER
from connectors.alerts import parse_alertmanager
from core.settings import Settings
from retrieval.embedding import OnnxEmbedder
from tests.botharness import ALERT_TOKEN, BOT_TOKEN, SECRET, SlackClient
from tests.fakes.slack import FakeSlack, fake_slack

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


PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


@asynccontextmanager
async def records_database(kind: str, scratch: Path) -> AsyncIterator[str]:
    """A fresh record database: a new PostgreSQL database (dropped afterwards) or an SQLite file."""
    if kind == "sqlite":
        yield f"sqlite:///{scratch / f'records-{uuid.uuid4().hex[:8]}.sqlite'}"
        return
    import psycopg

    name = f"opsflow_bench_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(PG_ADMIN, autocommit=True) as admin:
        await admin.execute(f"CREATE DATABASE {name}")
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def bot_env(data_dir: Path, records_url: str, slack_url: str, *, answer: bool) -> dict[str, str]:
    return {
        "OPSFLOW_DATA_DIR": str(data_dir),
        "OPSFLOW_RECORDS__URL": records_url,
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
    bots: list[BotProcess], slack: FakeSlack, http: aiohttp.ClientSession, n: int, tag: int, *, one_channel: bool
) -> dict[str, list[float]]:
    """``n`` concurrent mentions, the i-th sent to replica i mod len(bots)."""
    clients = [SlackClient(bot.url, http, slack.url) for bot in bots]
    results = await asyncio.gather(
        *(
            mention(
                clients[i % len(clients)],
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


def rss(bots: list[BotProcess]) -> str:
    return ", ".join(f"{bot.memory()['VmRSS']:.0f}" for bot in bots)


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


async def mentions(bots: list[BotProcess], slack: FakeSlack, rounds: int, n: int) -> dict[str, Any]:
    """The mention rounds; returns the figures of the table at the end."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as http:
        for i in range(len(bots)):  # loads each replica's embedding model
            await mention_round(bots[i:], slack, http, 1, 99 - i, one_channel=False)
        print(f"bot memory after the first answer: {rss(bots)} MiB VmRSS")
        for bot in bots:
            bot.reset_peak()
        alone = [await mention_round(bots, slack, http, 1, 90 + i, one_channel=False) for i in range(5)]
        print_mentions("1 at a time (5 mentions), for reference", {k: [a[k][0] for a in alone] for k in alone[0]})
        print(f"mentions: {n} concurrent signed app_mention events per round (target: ack p99 <= 100 ms)")
        spread: dict[str, list[float]] = {"ack": [], "placeholder": [], "answer": []}
        for r in range(rounds):
            times = await mention_round(bots, slack, http, n, r, one_channel=False)
            print_mentions(f"round {r + 1}, {n} channels", times)
            for key in spread:
                spread[key] += times[key]
        print_mentions(f"all {rounds} rounds, {n} channels", spread)
        one = await mention_round(bots, slack, http, n, 50, one_channel=True)
        print_mentions(f"1 round, {n} in ONE channel", one)
        print(f"  peak VmRSS during the mentions: {', '.join(f'{b.peak_rss:.0f}' for b in bots)} MiB")
    return {
        "ack p50 ms": _pct(spread["ack"], 50),
        "ack p99 ms": _pct(spread["ack"], 99),
        "placeholder p50 ms": summary(spread["placeholder"])["p50"],
        "answer p50 ms": summary(spread["answer"])["p50"],
        "answer p95 ms": summary(spread["answer"])["p95"],
    }


# -- alert storm ------------------------------------------------------------------------------------


async def drained(records: BotRecords, within: float = 1800) -> float:
    """Wait until no stored alert waits to be posted (by any replica); returns when (monotonic)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await unposted_count(records) == 0:
            return time.monotonic()
        await asyncio.sleep(0.25)
    raise SystemExit("the alert backlog did not drain")


async def storm(
    bots: list[BotProcess], slack: FakeSlack, records_url: str, total: int, seconds: float, groups: int
) -> dict[str, Any]:
    """The storm; returns the figures of the table at the end."""
    storm_plan = _alertstorm.plan(total, groups, seconds)
    first_call = len(slack.calls)
    for bot in bots:
        bot.reset_peak()
    records = BotRecords(records_url)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as http:
            urls = [f"{bot.url}/alerts/alertmanager" for bot in bots]
            sent = await _alertstorm.send(http, urls, ALERT_TOKEN, storm_plan)
            sent_s = time.monotonic() - sent.first_at
            done = await drained(records)
            await asyncio.sleep(2)  # anything a worker still had in hand reaches the fake
            metrics = [await (await http.get(f"{bot.url}/metrics")).text() for bot in bots]
        rows = await records.transaction(
            lambda s: [(fp, status) for fp, status in s.execute(select(AlertRecord.fingerprint, AlertRecord.status))]
        )
        threads = await records.transaction(lambda s: list(s.scalars(select(AlertThread))))
    finally:
        await records.aclose()

    expected = Counter((fp, status) for n in sent.accepted for fp, status in n.alerts)
    stored = Counter(rows)
    lost = sum((expected - stored).values())
    extra = sum((stored - expected).values())
    calls = slack.calls[first_call:]
    top_level = [c for c in calls if c.method == "chat.postMessage" and not c.args.get("thread_ts")]
    keys = {n.group: thread_key(parse_alertmanager(n.payload)[0], CHANNEL) for n in storm_plan.notifications}
    final = {keys[group]: state for group, state in storm_plan.final.items()}
    wrong_state = [t.group_key for t in threads if (t.status, frozenset(t.firing)) != final.get(t.group_key)]
    placeholders = [c for c in calls if c.method == "chat.postMessage" and c.args.get("text") == PLACEHOLDER]
    r = _alertstorm.rates(calls)
    refused = Counter(
        line.split("}")[0] + "}"
        for text in metrics
        for line in text.splitlines()
        if line.startswith("opsflow_alerts_refused_total") and float(line.rsplit(" ", 1)[1]) > 0
    )

    print(
        f"  sent {total} notifications ({sum(len(n.alerts) for n in storm_plan.notifications)} alerts) "
        f"to {groups} groups over {len(bots)} replica(s), planned over {seconds:.0f} s, took {sent_s:.1f} s"
    )
    print(
        f"  responses: {dict(sorted(sent.statuses.items()))}; accepted {len(sent.accepted)} notifications, "
        f"gave up on {len(sent.gave_up)}; bots counted refused: {dict(refused) or 'none'}"
    )
    print(
        f"  alerts: {sum(expected.values())} in accepted notifications, {len(rows)} stored, "
        f"lost {lost}, unexpected {extra}"
    )
    print(
        f"  threads: {len(threads)} stored, {len(top_level)} top-level posts (expected {groups}); "
        f"final state wrong in {len(wrong_state)}; workflow placeholders {len(placeholders)}"
    )
    print(
        f"  drained {done - sent.last_accepted_at:.1f} s after the last accepted notification "
        f"({done - sent.first_at:.1f} s after the first was sent)"
    )
    print(f"  Slack Web API calls: {r['total']}")
    print(
        f"  busiest 60 s per method: {r['per_minute']}; chat.postMessage per channel: "
        f"max {r['post_per_s_per_channel']} in 1 s, min gap {r['min_post_gap_s']} s"
        "  (Slack: chat.postMessage ~1/s per channel, chat.update Tier 3 ~50/min)"
    )
    print(f"  peak VmRSS during the storm: {', '.join(f'{b.peak_rss:.0f}' for b in bots)} MiB")
    return {
        "503s": sent.statuses.get(503, 0),
        "lost alerts": lost,
        "threads": len(threads),
        "top-level posts": len(top_level),
        "duplicate posts": len(top_level) - len(threads),
        "wrong final state": len(wrong_state),
        "drain s after last": round(done - sent.last_accepted_at, 1),
        "Slack calls": sum(r["total"].values()),
    }


# -- main -------------------------------------------------------------------------------------------


@asynccontextmanager
async def bot_processes(env: dict[str, str], scratch: Path, name: str, n: int) -> AsyncIterator[list[BotProcess]]:
    """``n`` replicas of the bot with the same settings (one record database, one Slack)."""
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(bot_process(env, scratch, f"{name}-r{i}")) for i in range(n)]


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        started = time.perf_counter()
        await build_kb(scratch / "data")
        print(f"knowledge base: samples/runbooks ingested in {time.perf_counter() - started:.0f} s")
        print(
            "Slack here is the loopback fake Web API of the tests (tests/fakes/slack.py): no network, no Slack latency"
        )
        counts = {"1": (1,), "2": (2,), "both": (1, 2)}[args.replicas]
        variants = {"both": (True, False), "on": (True,), "off": (False,)}[args.answer]
        table: dict[str, dict[str, Any]] = {}
        for n in counts:
            for index, answer in enumerate(variants):
                async with fake_slack() as slack, records_database(args.database, scratch) as url:
                    env = bot_env(scratch / "data", url, slack.url, answer=answer)
                    async with bot_processes(env, scratch, f"bot-{n}-{index}", n) as bots:
                        label = f"{n} replica{'s' if n > 1 else ''}"
                        print(f"\n== {label} (pids {', '.join(str(b.pid) for b in bots)}) on {args.database}, "
                              f"alerts.answer={answer} ==")  # fmt: skip
                        print(f"bot memory after start: {rss(bots)} MiB VmRSS")
                        column = table.setdefault(label, {})
                        if index == 0:
                            column.update(await mentions(bots, slack, args.rounds, args.mentions))
                        print(f"alert storm (alerts.answer={answer}):")
                        figures = await storm(bots, slack, url, args.notifications, args.seconds, args.groups)
                        column.update({f"{k} (answer {'on' if answer else 'off'})": v for k, v in figures.items()})
        print_table(table)


def print_table(table: dict[str, dict[str, Any]]) -> None:
    """The figures of each replica count side by side."""
    labels = list(table)
    rows = list(dict.fromkeys(key for column in table.values() for key in column))
    width = max(len(row) for row in rows)
    print(f"\n{'':{width}}  " + "  ".join(f"{label:>12}" for label in labels))
    for row in rows:
        print(f"{row:{width}}  " + "  ".join(f"{table[label].get(row, ''):>12}" for label in labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 round of 20 mentions, 200 notifications in 12 s"
    )
    parser.add_argument("--replicas", choices=("1", "2", "both"), default="both", help="bot processes on one database")
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mentions", type=int, default=50)
    parser.add_argument("--notifications", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--answer", choices=("both", "on", "off"), default="on", help="alerts.answer for the storm")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress shows when piped
    if args.quick:
        args.rounds, args.mentions, args.notifications, args.seconds = 1, 20, 200, 12.0
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
