"""The record store: what people and the bot did, kept for audit and for training.

SQLAlchemy 2 on SQLite (default, under the data directory) or PostgreSQL (by URL). Writes are
committed before the call returns, so a caller may acknowledge only after ``await`` completes.
Later tables (interactions, feedback, alerts, model versions) join ``_Base`` here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from sqlalchemy import JSON, DateTime, Dialect, Integer, String, TypeDecorator, create_engine, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from core.errors import BackendUnavailable

T = TypeVar("T")


class UtcDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone, so it is put back on read)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        return value.astimezone(dt.UTC) if value is not None else None

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class _Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, dt.datetime: UtcDateTime}


class AuditEvent(_Base):
    """Who did what, when: ingests, admin commands, approvals, promotions."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100), index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class RecordStore:
    """Typed access to the record database; blocking work runs in a thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Engine | None = None
        self._sessions: sessionmaker[Session] | None = None

    def _session(self) -> Session:
        if self._sessions is None:
            if self.url.startswith("sqlite:///"):
                Path(self.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self._engine = create_engine(self.url, pool_pre_ping=True)
            _Base.metadata.create_all(self._engine)
            self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        return self._sessions()

    async def _run(self, fn: Callable[[Session], T]) -> T:
        def work() -> T:
            with self._session() as session, session.begin():
                return fn(session)

        try:
            return await asyncio.to_thread(work)
        except OperationalError as exc:
            raise BackendUnavailable(f"record store unreachable: {exc.orig}", backend="records") from exc

    async def audit(self, actor: str, action: str, detail: dict[str, Any] | None = None) -> AuditEvent:
        """Append an audit event; returns it once committed."""
        event = AuditEvent(at=dt.datetime.now(dt.UTC), actor=actor, action=action, detail=detail or {})

        def add(session: Session) -> AuditEvent:
            session.add(event)
            return event

        return await self._run(add)

    async def audit_log(self, *, action: str | None = None, limit: int = 50) -> list[AuditEvent]:
        """The latest events, newest first."""

        def read(session: Session) -> list[AuditEvent]:
            query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
            if action is not None:
                query = query.where(AuditEvent.action == action)
            return list(session.scalars(query))

        return await self._run(read)

    async def aclose(self) -> None:
        if self._engine is not None:
            await asyncio.to_thread(self._engine.dispose)
