"""Record stores for the trainer's tests: SQLite in a temporary directory, and the local PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from trainer.store import RecordStore


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The admin URL of the PostgreSQL these machines run on 127.0.0.1:5432 (trust auth); skips without one."""
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not running on 127.0.0.1:5432 ({exc})")
    yield "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


@pytest.fixture
def records_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database: SQLite unless the test is parametrized with ``postgresql``."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield f"sqlite:///{tmp_path}/records.sqlite"
        return
    import psycopg

    name = f"opsflow_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(request.getfixturevalue("pg_server"), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
async def records(records_url: str) -> AsyncIterator[RecordStore]:
    store = RecordStore(records_url)
    yield store
    await store.aclose()
