"""The bot's own records on SQLite and on the PostgreSQL server these machines run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.records import AlertRecord, AlertThread, BotRecords


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BotRecords]:
    url = (
        f"sqlite:///{tmp_path}/records.sqlite" if request.param == "sqlite" else request.getfixturevalue("pg_database")
    )
    store = BotRecords(url)
    yield store
    await store.aclose()


async def test_a_message_is_new_once_even_from_two_stores_at_once(store: BotRecords) -> None:
    await store.audit("replica-1", "start")  # the tables exist, as after the first replica started
    other = BotRecords(store.url)  # another replica on the same database
    try:
        firsts = await asyncio.gather(*(s.first_sighting("T1:C1:1.1") for s in (store, other, store, other)))
    finally:
        await other.aclose()
    assert sorted(firsts) == [False, False, False, True]
    assert await store.first_sighting("T1:C1:1.2")


async def test_alerts_stay_unposted_until_marked(store: BotRecords) -> None:
    rows = [
        AlertRecord(source="alertmanager", fingerprint=f"f{i}", group_key=f"g{i % 2}", status="firing", alert={})
        for i in range(3)
    ]
    await store.add_alerts(rows)
    assert [r.fingerprint for r in await store.unposted_alerts("g0")] == ["f0", "f2"]
    await store.mark_alerts_posted([rows[0].id, rows[2].id])
    assert [r.fingerprint for r in await store.unposted_alerts()] == ["f1"]
    thread = AlertThread(group_key="g0", channel="C1", thread_ts="3.0", status="firing", firing={"f0": "A"})
    await store.save_alert_thread(thread)
    thread.status = "resolved"
    await store.save_alert_thread(thread)
    assert (await store.alert_thread("g0")).status == "resolved"  # type: ignore[union-attr]
