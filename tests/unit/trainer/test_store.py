"""The record store on SQLite and on the PostgreSQL server these machines run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.errors import BackendUnavailable
from trainer.store import Interaction, RecordStore


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RecordStore]:
    url = (
        f"sqlite:///{tmp_path}/records.sqlite" if request.param == "sqlite" else request.getfixturevalue("pg_database")
    )
    store = RecordStore(url)
    yield store
    await store.aclose()


async def test_audit_events_are_committed_and_read_newest_first(store: RecordStore) -> None:
    await store.audit("alice", "ingest", {"added": ["a.md"], "partial": False})
    await store.audit("bob", "models.promote", {"version": 3})
    events = await store.audit_log()
    assert [(e.actor, e.action) for e in events][:2] == [("bob", "models.promote"), ("alice", "ingest")]
    assert events[1].detail == {"added": ["a.md"], "partial": False}
    assert events[0].at.tzinfo is not None


async def test_audit_log_filters_by_action(store: RecordStore) -> None:
    await store.audit("alice", "ingest")
    await store.audit("carol", "schedule.add")
    assert {e.actor for e in await store.audit_log(action="schedule.add")} == {"carol"}


async def test_writes_survive_a_new_store_on_the_same_database(store: RecordStore) -> None:
    await store.audit("dave", "ingest", {"n": 1})
    again = RecordStore(store.url)
    try:
        assert any(e.actor == "dave" for e in await again.audit_log())
    finally:
        await again.aclose()


async def test_an_unreachable_database_is_a_backend_error() -> None:
    store = RecordStore("postgresql+psycopg://postgres@127.0.0.1:9/none?connect_timeout=2")
    with pytest.raises(BackendUnavailable, match="record store unreachable"):
        await store.audit("x", "y")
    await store.aclose()


async def test_feedback_is_one_row_per_user_and_answer_with_the_last_vote_winning(store: RecordStore) -> None:
    answer = await store.add_interaction(Interaction(origin="slack", channel="C1", message_ts="1.1", query="q"))
    await store.record_feedback(answer.id, "U1", via="reaction", vote=1)
    await store.record_feedback(answer.id, "U1", via="modal", reason="missed the disk check")
    await store.record_feedback(answer.id, "U1", via="flag", step_flags={"s2": "wrong"})
    await store.record_feedback(answer.id, "U1", via="flag", step_flags={"s3": "dangerous"})
    await store.record_feedback(answer.id, "U1", via="button", vote=-1)
    await asyncio.gather(*(store.record_feedback(answer.id, "U2", via="reaction", vote=v) for v in (1, -1, 1)))
    rows = {f.user: f for f, _ in await store.feedback()}
    assert len(await store.feedback()) == 2
    first = rows["U1"]
    assert (first.vote, first.reason, first.via) == (-1, "missed the disk check", "button")
    assert first.step_flags == {"s2": "wrong", "s3": "dangerous"}
    assert rows["U2"].vote in (1, -1)
