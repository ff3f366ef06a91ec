"""Shared fixtures: network blocker, blocking-call detector, a real embedder, a sample knowledge base."""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import open_knowledge
from bot.ingest import ingest
from core.settings import Settings
from retrieval.embedding import OnnxEmbedder

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples" / "runbooks"
BENCH = ROOT.parent / "shared" / "bench"


@pytest.fixture(autouse=True)
def _loopback_only(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse connections to anything but loopback, except in tests marked ``integration``."""
    if request.node.get_closest_marker("integration"):
        return
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            try:
                loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                raise ConnectionRefusedError(f"tests may only connect to loopback, not {host}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


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
def pg_database(pg_server: str) -> Iterator[str]:
    """The URL of a fresh, empty database on the local PostgreSQL, dropped afterwards."""
    import psycopg

    name = f"opsflow_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def records_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh record database: SQLite unless the test is parametrized (indirectly) with ``postgresql``."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return f"sqlite:///{tmp_path}/records.sqlite"
    return str(request.getfixturevalue("pg_database"))


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ONNX export of the packaged MiniLM per test session, shared by every data directory."""
    cache = tmp_path_factory.mktemp("models")
    asyncio.run(OnnxEmbedder(cache).embed(["warm up"]))
    return cache


def make_settings(data_dir: Path, model_cache: Path, **env: Any) -> Settings:
    """Settings for a fresh data directory that reuses the session's ONNX export."""
    (data_dir / "models").parent.mkdir(parents=True, exist_ok=True)
    if not (data_dir / "models").exists():
        shutil.copytree(model_cache, data_dir / "models")
    return Settings(data_dir=data_dir, _env_file=None, **env)


@pytest.fixture
def settings(tmp_path: Path, model_cache: Path) -> Settings:
    return make_settings(tmp_path / "data", model_cache)


@pytest.fixture(scope="session")
def sample_kb(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Settings:
    """A data directory with the project's sample runbooks ingested (read-only for tests)."""
    settings = make_settings(tmp_path_factory.mktemp("sample-kb"), model_cache)

    async def build() -> None:
        async with open_knowledge(settings) as kb:
            report = await ingest([SAMPLES], kb.builder, max_bytes=settings.ingest.max_document_bytes)
            assert not report.failed, report.failed

    asyncio.run(build())
    return settings


@pytest.fixture
def sample_copy(tmp_path: Path) -> Iterator[Path]:
    """A writable copy of the sample runbooks."""
    target = tmp_path / "runbooks"
    shutil.copytree(SAMPLES, target)
    yield target


@pytest.fixture(autouse=True)
def _no_blocking_on_the_loop(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail async tests whose code under test blocks the event loop (file, socket, sleep, lock calls
    made on the loop thread from opsflow's packages; tests and libraries may)."""
    if not request.node.get_closest_marker("asyncio") and not _is_async(request):
        yield
        return
    from blockbuster import blockbuster_ctx

    with blockbuster_ctx(scanned_modules=["core", "bot", "retrieval", "generation", "trainer", "connectors"]):
        yield


def _is_async(request: pytest.FixtureRequest) -> bool:
    import inspect

    return inspect.iscoroutinefunction(getattr(request.node, "function", None))
