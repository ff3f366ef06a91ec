"""Two ``opsflow serve`` processes on one PostgreSQL database, requests spread over both (issue 11).

Every mention is answered once, also when Slack retries it to the other replica or the message is
edited there, and one replica holds the scheduler, so a schedule runs once. (A write approved once
across replicas: ``tests/unit/bot/test_executor.py``, two stores on one database.) Real processes,
a real database, the loopback Slack fake.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

import aiohttp
import pytest
from sqlalchemy import select

from core.settings import Settings
from tests.botharness import ALERT_TOKEN, BOT_TOKEN, SECRET, SlackClient
from tests.conftest import ROOT
from tests.fakes.slack import FakeSlack, fake_slack
from trainer.store import Lease, RecordStore

QUESTION = "pods keep restarting with CrashLoopBackOff, what do I do?"
RETRY = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _replica(env: dict[str, str], port: int, log: BinaryIO) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "serve",
        env={**env, "OPSFLOW_HTTP__PORT": str(port)},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=log,  # the replica's log, kept in the test's directory
    )


async def _healthy(http: aiohttp.ClientSession, url: str) -> None:
    for _ in range(600):
        try:
            if (await http.get(f"{url}/healthz")).status == 200:
                return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} did not come up")


@pytest.fixture
async def replicas(
    sample_kb: Settings, tmp_path: Path, pg_database: str
) -> AsyncIterator[tuple[list[SlackClient], FakeSlack]]:
    """Two serving processes on ``pg_database`` (started at once, on an empty database)."""
    async with fake_slack() as slack:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),  # this checkout's code, whatever is installed
            "OPSFLOW_DATA_DIR": str(sample_kb.data_dir),
            "OPSFLOW_RECORDS__URL": pg_database,
            "OPSFLOW_SLACK__BOT_TOKEN": BOT_TOKEN,
            "OPSFLOW_SLACK__SIGNING_SECRET": SECRET,
            "OPSFLOW_SLACK__API_URL": slack.url,
            "OPSFLOW_ALERTS__TOKEN": ALERT_TOKEN,
        }
        ports = [_free_port(), _free_port()]
        logs = [(tmp_path / f"replica-{port}.log").open("wb") for port in ports]
        processes = [await _replica(env, port, log) for port, log in zip(ports, logs, strict=True)]
        try:
            async with aiohttp.ClientSession() as http:
                urls = [f"http://127.0.0.1:{port}" for port in ports]
                await asyncio.gather(*(_healthy(http, url) for url in urls))
                yield [SlackClient(url, http, slack.url) for url in urls], slack
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            await asyncio.gather(*(asyncio.wait_for(p.wait(), 60) for p in processes))
            for log in logs:
                log.close()


def _mention(ts: str, text: str = QUESTION, **extra: object) -> dict[str, object]:
    return {"type": "app_mention", "user": "U1", "channel": "C1", "ts": ts, "text": f"<@UBOT> {text}", **extra}


async def test_two_replicas_answer_each_mention_once_and_share_one_scheduler(
    replicas: tuple[list[SlackClient], FakeSlack], pg_database: str
) -> None:
    (a, b), slack = replicas
    questions = [f"1800000{i:03d}.000100" for i in range(8)]
    sends = []
    for i, ts in enumerate(questions):
        first, other = (a, b) if i % 2 == 0 else (b, a)
        sends.append(first.event(_mention(ts), f"EvR{i}"))
        sends.append(other.event(_mention(ts), f"EvR{i}", **RETRY))  # Slack's retry, to the other replica
        edited = _mention(ts, f"{QUESTION} (edited)", edited={"user": "U1", "ts": "1800000999.0"})
        sends.append(other.event(edited, f"EvR{i}edit"))  # the edit arrives as a new event, there too
    assert all(r.status == 200 for r in await asyncio.gather(*sends))

    await slack.wait_for("chat.update", count=len(questions), within=120)
    await asyncio.sleep(2)  # anything a second answer would post has had time to arrive
    placeholders = Counter(c.args["thread_ts"] for c in slack.of("chat.postMessage"))
    assert placeholders == dict.fromkeys(questions, 1)
    assert len(slack.of("chat.update")) == len(questions)

    records = RecordStore(pg_database)
    try:
        leases = await records.transaction(lambda s: list(s.scalars(select(Lease).where(Lease.name == "scheduler"))))
    finally:
        await records.aclose()
    assert len(leases) == 1, "one replica holds the scheduler, so a schedule runs once"
