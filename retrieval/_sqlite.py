"""One SQLite connection owned by one worker thread, so the event loop never blocks on it."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from core.errors import ConfigError

T = TypeVar("T")


class SqliteWorker:
    """Runs functions of a connection on a single dedicated thread (sqlite3 objects are not thread-safe)."""

    def __init__(self, path: Path, schema: str, version: int) -> None:
        self._path = path
        self._schema = schema
        self._version = version
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-{path.stem}")
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
                conn.executescript(self._schema)
                conn.execute(f"PRAGMA user_version = {self._version}")
            elif (found := conn.execute("PRAGMA user_version").fetchone()[0]) != self._version:
                conn.close()
                raise ConfigError(
                    f"{self._path} has storage format {found}, this opsflow needs {self._version}: "
                    "delete it and run `opsflow ingest` again"
                )
            self._conn = conn
        return self._conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` on the worker thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(self._connection()))

    async def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` inside BEGIN IMMEDIATE … COMMIT; any exception rolls it back."""

        def wrapped(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await self.run(wrapped)

    async def aclose(self) -> None:
        def close(_: sqlite3.Connection) -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        if self._conn is not None:
            await self.run(close)
        # The close above was the worker's last job; joining the idle thread would block the loop.
        self._executor.shutdown(wait=False)
