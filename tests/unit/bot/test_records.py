"""The bot's own records on SQLite and on the PostgreSQL server these machines run."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bot.records import AlertRecord, AlertThread, BotRecords
from trainer.store import Interaction, Record


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
    event = {"type": "app_mention", "ts": "1.1"}
    try:
        firsts = await asyncio.gather(*(s.write_inbox({"T1:C1:1.1": event}, ()) for s in (store, other, store, other)))
    finally:
        await other.aclose()
    assert sorted(len(taken) for taken in firsts) == [0, 0, 0, 1]
    assert await store.write_inbox({"T1:C1:1.1": event, "T1:C1:1.2": event}, ()) == {"T1:C1:1.2"}


async def test_an_unanswered_question_is_taken_over_once_it_is_stale(store: BotRecords) -> None:
    events = {f"T1:C1:{i}.0": {"type": "app_mention", "ts": f"{i}.0", "text": f"q{i}"} for i in range(3)}
    with ThreadPoolExecutor(1) as thread:  # the inbox's own thread, as on the ack path
        assert await store.write_inbox(events, (), executor=thread) == set(events)
        await store.write_inbox({}, ["T1:C1:0.0"], executor=thread)
    assert await store.take_over_inbox(dt.timedelta(minutes=5)) == []  # the replica answering has time left
    taken = await store.take_over_inbox(dt.timedelta(0), max_attempts=2)
    assert sorted(taken) == [(k, events[k]) for k in ("T1:C1:1.0", "T1:C1:2.0")]  # not the answered one
    assert await store.take_over_inbox(dt.timedelta(0), max_attempts=2) == []  # two attempts, then left alone
    await store.take_over_inbox(dt.timedelta(0), keep=dt.timedelta(0))  # a day later: forgotten
    assert await store.write_inbox(events, ()) == set(events)


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


async def test_answers_are_found_by_their_slack_message_and_thread(store: BotRecords) -> None:
    for i in range(3):
        await store.add_interaction(
            Interaction(origin="slack", channel="C1", thread_ts="1.0", message_ts=f"1.{i + 1}", query=f"q{i}")
        )
    await store.add_interaction(Interaction(origin="slack", channel="C1", thread_ts="2.0", query="other"))
    assert [i.query for i in await store.thread_history("C1", "1.0")] == ["q0", "q1", "q2"]  # oldest first
    assert [i.query for i in await store.thread_history("C1", "1.0", limit=2)] == ["q1", "q2"]
    assert (await store.interaction_at("C1", "1.2")).query == "q1"  # type: ignore[union-attr]
    assert await store.interaction_at("C1", "9.9") is None


def test_the_trainer_owns_only_the_tables_training_reads() -> None:
    """Issue 11: the bot's own tables live in the bot; ``trainer`` keeps what training reads (and cannot
    import the bot: the import-linter layers contract), so no bot table can be reached from there."""
    import bot.alert_groups  # noqa: F401  # its table joins the metadata on import

    owners = {m.class_.__tablename__: m.class_.__module__.split(".")[0] for m in Record.registry.mappers}
    trainer = {table for table, package in owners.items() if package == "trainer"}
    assert trainer == {"interactions", "feedback", "executor_runs", "model_versions", "leases", "audit_events"}
    assert {"slack_inbox", "alerts", "alert_threads", "alert_intents", "approvals", "corrections"} <= {
        table for table, package in owners.items() if package == "bot"
    }
