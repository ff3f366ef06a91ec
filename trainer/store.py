"""The record store: what people and the bot did, kept for audit and for training.

SQLAlchemy 2 on SQLite (default, under the data directory) or PostgreSQL (by URL). Writes are
committed before the call returns, so a caller may acknowledge only after ``await`` completes.
The tables training reads live here (one metadata, created on first use); the bot's own tables
(``bot.records``) join the same metadata. Other modules (the model registry, executor runs) read and
write these through ``RecordStore.transaction``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    select,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from core.errors import BackendUnavailable

T = TypeVar("T")
POOL_SIZE = 12  # connections kept open per process


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


class Record(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, dt.datetime: UtcDateTime}


class AuditEvent(Record):
    """Who did what, when: ingests, admin commands, approvals, promotions."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100), index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Interaction(Record):
    """One answer the bot gave: the question, the exact context and model, and where it was posted."""

    __tablename__ = "interactions"
    __table_args__ = (UniqueConstraint("channel", "message_ts"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=_now, index=True)
    origin: Mapped[str] = mapped_column(String(20))  # slack | alert | cli | checks
    user: Mapped[str] = mapped_column(String(200), default="")
    channel: Mapped[str | None] = mapped_column(String(100), default=None)
    thread_ts: Mapped[str | None] = mapped_column(String(40), default=None)
    message_ts: Mapped[str | None] = mapped_column(String(40), default=None)  # the bot's answer message
    query: Mapped[str] = mapped_column(Text)
    answer: Mapped[dict[str, Any]] = mapped_column(default=dict)  # Answer.model_dump(mode="json")
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)  # retrieved chunk ids, doc ids, scores
    model: Mapped[str] = mapped_column(String(200), default="")
    planner: Mapped[str] = mapped_column(String(40), default="")
    abstained: Mapped[bool] = mapped_column(default=False)
    alert_group: Mapped[str | None] = mapped_column(String(300), default=None, index=True)


class Feedback(Record):
    """One person's judgement of one answer; a later judgement replaces the earlier (last write wins)."""

    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("interaction_id", "user"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    interaction_id: Mapped[int] = mapped_column(ForeignKey("interactions.id", ondelete="CASCADE"), index=True)
    user: Mapped[str] = mapped_column(String(200))
    vote: Mapped[int] = mapped_column(default=0)  # +1, -1, or 0 (withdrawn / none)
    reason: Mapped[str] = mapped_column(Text, default="")
    corrected: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)  # Workflow.model_dump
    step_flags: Mapped[dict[str, Any]] = mapped_column(default=dict)  # step id -> wrong | incomplete | dangerous
    via: Mapped[str] = mapped_column(String(20), default="")  # reaction | button | modal | edit
    updated_at: Mapped[dt.datetime] = mapped_column(default=_now, index=True)


class ModelVersion(Record):
    """A trained planner or scorer: what it was trained from and how it did at the gate."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=_now)
    target: Mapped[str] = mapped_column(String(20), index=True)  # planner | scorer
    method: Mapped[str] = mapped_column(String(20))  # sft | dpo | grpo | kto
    base: Mapped[str] = mapped_column(String(500))
    adapter: Mapped[str | None] = mapped_column(String(500), default=None)  # adapter directory / GGUF path
    data_hash: Mapped[str] = mapped_column(String(80), default="")
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)  # before/after gate metrics
    status: Mapped[str] = mapped_column(String(20), default="candidate", index=True)  # candidate|promoted|retired…
    trigger: Mapped[str] = mapped_column(String(200), default="")  # who or which schedule
    promoted_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class ExecutorRun(Record):
    """One run of a workflow's checks (a trajectory): steps, tool results, decisions, approvals, outcome."""

    __tablename__ = "executor_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    started_at: Mapped[dt.datetime] = mapped_column(default=_now, index=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    interaction_id: Mapped[int | None] = mapped_column(ForeignKey("interactions.id"), default=None, index=True)
    user: Mapped[str] = mapped_column(String(200), default="")
    query: Mapped[str] = mapped_column(Text, default="")
    incident: Mapped[str] = mapped_column(String(500), default="", index=True)  # leading runbook / incident name
    workflow: Mapped[dict[str, Any]] = mapped_column(default=dict)
    steps: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"events": [...]} in the order they happened
    state: Mapped[str] = mapped_column(String(30), default="running")  # running | waiting_approval | finished | stopped
    channel: Mapped[str | None] = mapped_column(String(100), default=None)  # where it runs; approvals only there
    thread_ts: Mapped[str | None] = mapped_column(String(40), default=None)
    outcome: Mapped[str | None] = mapped_column(String(30), default=None)  # resolved | not_resolved


class Lease(Record):
    """A named role one process holds until ``expires_at`` unless it renews it (the training scheduler)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[dt.datetime] = mapped_column()


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    # WAL lets readers go on while one writer commits, and costs one fsync a commit instead of the
    # rollback journal's several; synchronous=FULL keeps every acknowledged commit on disk.
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


class RecordStore:
    """Typed access to the record database; blocking work runs in a thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Engine | None = None
        self._sessions: sessionmaker[Session] | None = None
        self._opening = threading.Lock()

    def _session(self) -> Session:
        with self._opening:  # first calls may come from several worker threads at once
            if self._sessions is None:
                if self.url.startswith("sqlite:///"):
                    Path(self.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
                # Room for every thread that may hold a connection at once (the default pool's, the bot's inbox
                # writers'): past ``pool_size`` each transaction opens and closes a connection of its own.
                self._engine = create_engine(self.url, pool_pre_ping=True, pool_size=POOL_SIZE)
                if self._engine.dialect.name == "sqlite":
                    event.listen(self._engine, "connect", _sqlite_pragmas)
                with self._engine.begin() as connection:
                    if connection.dialect.name == "postgresql":  # replicas starting at once on an empty database
                        connection.execute(text("SELECT pg_advisory_xact_lock(4163)"))
                    Record.metadata.create_all(connection)
                self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        return self._sessions()

    async def transaction(self, fn: Callable[[Session], T], *, executor: Executor | None = None) -> T:
        """Run ``fn`` in one committed transaction, off the event loop: on ``executor`` (a caller's own
        thread, so the commit does not queue behind other work) or the loop's default thread pool."""

        def work() -> T:
            with self._session() as session, session.begin():
                return fn(session)

        try:
            if executor is None:
                return await asyncio.to_thread(work)
            return await asyncio.get_running_loop().run_in_executor(executor, work)
        except OperationalError as exc:
            raise BackendUnavailable(f"record store unreachable: {exc.orig}", backend="records") from exc

    async def audit(self, actor: str, action: str, detail: dict[str, Any] | None = None) -> AuditEvent:
        """Append an audit event; returns it once committed."""
        event = AuditEvent(at=dt.datetime.now(dt.UTC), actor=actor, action=action, detail=detail or {})

        def add(session: Session) -> AuditEvent:
            session.add(event)
            return event

        return await self.transaction(add)

    async def audit_log(self, *, action: str | None = None, limit: int = 50) -> list[AuditEvent]:
        """The latest events, newest first."""

        def read(session: Session) -> list[AuditEvent]:
            query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
            if action is not None:
                query = query.where(AuditEvent.action == action)
            return list(session.scalars(query))

        return await self.transaction(read)

    async def add_interaction(self, interaction: Interaction) -> Interaction:
        """Record an answer (before or after it is posted); returns it with its id."""

        def add(session: Session) -> Interaction:
            session.add(interaction)
            session.flush()
            return interaction

        return await self.transaction(add)

    async def update_interaction(self, interaction_id: int, **values: Any) -> None:
        """Change fields of a recorded answer (e.g. the ts of the message it was posted as)."""

        def update(session: Session) -> None:
            row = session.get(Interaction, interaction_id)
            if row is None:
                raise KeyError(interaction_id)
            for name, value in values.items():
                setattr(row, name, value)

        await self.transaction(update)

    async def interaction(self, interaction_id: int) -> Interaction | None:
        return await self.transaction(lambda session: session.get(Interaction, interaction_id))

    async def record_feedback(self, interaction_id: int, user: str, *, via: str, **values: Any) -> Feedback:
        """Merge ``values`` (vote, reason, corrected, step_flags) into this user's feedback on the answer.

        One row per user and answer: the latest vote wins, and a reason or correction given later
        is kept alongside it. ``step_flags`` are merged by step.
        """

        def upsert(session: Session) -> Feedback:
            query = select(Feedback).where(Feedback.interaction_id == interaction_id, Feedback.user == user)
            row = session.scalars(query.with_for_update()).first()
            if row is None:
                row = Feedback(interaction_id=interaction_id, user=user, vote=0, reason="", step_flags={})
                session.add(row)
            flags = values.pop("step_flags", None)
            if flags:
                row.step_flags = {**row.step_flags, **flags}
            for name, value in values.items():
                setattr(row, name, value)
            row.via, row.updated_at = via, _now()
            session.flush()
            return row

        try:
            return await self.transaction(upsert)
        except IntegrityError:  # two first votes raced; the row exists now
            return await self.transaction(upsert)

    async def user_feedback(self, interaction_id: int, user: str) -> Feedback | None:
        def read(session: Session) -> Feedback | None:
            query = select(Feedback).where(Feedback.interaction_id == interaction_id, Feedback.user == user)
            return session.scalars(query).first()

        return await self.transaction(read)

    async def feedback(self, *, limit: int = 100) -> list[tuple[Feedback, Interaction]]:
        """The latest feedback with the answers it judges, newest first."""

        def read(session: Session) -> list[tuple[Feedback, Interaction]]:
            query = (
                select(Feedback, Interaction)
                .join(Interaction, Feedback.interaction_id == Interaction.id)
                .order_by(Feedback.updated_at.desc(), Feedback.id.desc())
                .limit(limit)
            )
            return [(f, i) for f, i in session.execute(query)]

        return await self.transaction(read)

    async def aclose(self) -> None:
        if self._engine is not None:
            await asyncio.to_thread(self._engine.dispose)
