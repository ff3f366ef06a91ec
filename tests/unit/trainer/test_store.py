"""The record store on SQLite and on the PostgreSQL server these machines run."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from core.errors import BackendUnavailable
from trainer.store import RecordStore

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A throw-away database on the local PostgreSQL (trust auth)."""
    psycopg = pytest.importorskip("psycopg")
    name = f"opsflow_test_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True, connect_timeout=3
        )
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not running on 127.0.0.1:5432 ({exc})")
    with admin:
        admin.execute(f"CREATE DATABASE {name}")
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[RecordStore]:
    url = f"sqlite:///{tmp_path}/records.sqlite" if request.param == "sqlite" else request.getfixturevalue("pg_url")
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
