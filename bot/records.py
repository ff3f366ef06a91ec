"""The bot's own records: the questions taken up, alerts, alert threads and write approvals.

These tables serve the bot alone; training reads none of them, so they live here and not in
``trainer.store``. They share its metadata and database (one URL, one ``create_all``), and
``BotRecords`` is the record store with their SQL added: the bot process opens this one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from concurrent.futures import Executor
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint, delete, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from trainer.store import Interaction, Record, RecordStore


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class InboxMessage(Record):
    """A person's question the bot took up, written before Slack got its 200 and keyed by the message
    (team, channel, ts), not by the delivery: Slack's retries, an edit of the message and a second
    replica all find it here. ``answered_at`` stays empty until the answer is shown; a row left
    unanswered past the answer timeout (its replica stopped) is taken up again, at most ``attempts`` times."""

    __tablename__ = "slack_inbox"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    taken_at: Mapped[dt.datetime] = mapped_column(default=_now, index=True)  # by the replica answering it
    event: Mapped[dict[str, Any]] = mapped_column(default=dict)  # Slack's event, to answer it again
    answered_at: Mapped[dt.datetime | None] = mapped_column(default=None, index=True)
    attempts: Mapped[int] = mapped_column(default=1)


class AlertRecord(Record):
    """An alert as received, kept before the webhook is acknowledged; ``posted_at`` once it reached Slack."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    received_at: Mapped[dt.datetime] = mapped_column(default=_now, index=True)
    source: Mapped[str] = mapped_column(String(20))
    fingerprint: Mapped[str] = mapped_column(String(200), index=True)
    group_key: Mapped[str] = mapped_column(String(300), index=True)
    status: Mapped[str] = mapped_column(String(20))
    alert: Mapped[dict[str, Any]] = mapped_column(default=dict)  # Alert.model_dump(mode="json")
    posted_at: Mapped[dt.datetime | None] = mapped_column(default=None, index=True)


class AlertThread(Record):
    """The one Slack thread of an alert group."""

    __tablename__ = "alert_threads"

    group_key: Mapped[str] = mapped_column(String(300), primary_key=True)
    channel: Mapped[str] = mapped_column(String(100))
    thread_ts: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))  # firing | resolved
    firing: Mapped[dict[str, Any]] = mapped_column(default=dict)  # fingerprint -> alert name, still firing
    created_at: Mapped[dt.datetime] = mapped_column(default=_now)
    updated_at: Mapped[dt.datetime] = mapped_column(default=_now)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class Approval(Record):
    """A write step's approval: one row per run and step, so a second click cannot run it twice."""

    __tablename__ = "approvals"
    __table_args__ = (UniqueConstraint("run_id", "step_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("executor_runs.id", ondelete="CASCADE"), index=True)
    step_id: Mapped[str] = mapped_column(String(100))
    action: Mapped[dict[str, Any]] = mapped_column(default=dict)
    requested_at: Mapped[dt.datetime] = mapped_column(default=_now)
    decision: Mapped[str] = mapped_column(String(20), default="pending")  # pending | approved | rejected
    decided_by: Mapped[str | None] = mapped_column(String(200), default=None)
    decided_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    output: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str | None] = mapped_column(String(30), default=None)  # ok | error | refused


class BotRecords(RecordStore):
    """The record store of the bot process: everything of ``RecordStore`` plus the bot's own tables."""

    async def interaction_at(self, channel: str, message_ts: str) -> Interaction | None:
        """The answer posted as this Slack message, or None when the message is not one of the bot's answers."""

        def read(session: Session) -> Interaction | None:
            query = select(Interaction).where(Interaction.channel == channel, Interaction.message_ts == message_ts)
            return session.scalars(query).first()

        return await self.transaction(read)

    async def thread_history(self, channel: str, thread_ts: str, *, limit: int = 5) -> list[Interaction]:
        """The earlier answers in a Slack thread, oldest first: a follow-up's context."""

        def read(session: Session) -> list[Interaction]:
            query = (
                select(Interaction)
                .where(Interaction.channel == channel, Interaction.thread_ts == thread_ts)
                .order_by(Interaction.id.desc())
                .limit(limit)
            )
            return list(reversed(list(session.scalars(query))))

        return await self.transaction(read)

    async def write_inbox(
        self, new: Mapping[str, dict[str, Any]], answered: Collection[str], *, executor: Executor | None = None
    ) -> set[str]:
        """In one transaction: take up the messages ``new`` (key ``team:channel:ts`` → Slack's event) and
        mark the keys ``answered``. Returns the keys of ``new`` seen for the first time, by any replica
        (an existing key, also one another replica is inserting at this moment, is not returned).
        ``executor``: the thread to run on (default: the loop's default pool)."""
        now = _now()

        def write(session: Session) -> set[str]:
            taken: set[str] = set()
            if new:
                rows = [{"key": k, "event": e, "taken_at": now} for k, e in new.items()]
                # One INSERT … ON CONFLICT DO NOTHING (a row another replica is inserting waits for its
                # commit), given the rows as parameters: its compiled form is cached, whatever their number.
                if session.get_bind().dialect.name == "postgresql":
                    insert = postgresql_insert(InboxMessage).on_conflict_do_nothing(index_elements=["key"])
                    taken = set(session.scalars(insert.returning(InboxMessage.key), rows))
                else:
                    insert_ = sqlite_insert(InboxMessage).on_conflict_do_nothing(index_elements=["key"])
                    taken = set(session.scalars(insert_.returning(InboxMessage.key), rows))
            if answered:
                session.execute(
                    update(InboxMessage).where(InboxMessage.key.in_(list(answered))).values(answered_at=now)
                )
            return taken

        return await self.transaction(write, executor=executor)

    async def take_over_inbox(
        self, stale: dt.timedelta, *, max_attempts: int = 3, keep: dt.timedelta = dt.timedelta(days=1)
    ) -> list[tuple[str, dict[str, Any]]]:
        """(key, event) of the questions taken up more than ``stale`` ago and never answered (the replica
        that took them stopped), now taken by the caller; rows older than ``keep`` are forgotten."""

        def take(session: Session) -> list[tuple[str, dict[str, Any]]]:
            now = _now()
            session.execute(delete(InboxMessage).where(InboxMessage.taken_at < now - keep))
            query = (
                select(InboxMessage)
                .where(
                    InboxMessage.answered_at.is_(None),
                    InboxMessage.taken_at < now - stale,
                    InboxMessage.attempts < max_attempts,
                )
                .order_by(InboxMessage.taken_at)
                .limit(100)
                .with_for_update(skip_locked=True)  # two replicas sweeping at once take different rows
            )
            rows = list(session.scalars(query))
            for row in rows:
                row.taken_at, row.attempts = now, row.attempts + 1
            return [(row.key, dict(row.event)) for row in rows]

        return await self.transaction(take)

    async def add_correction(self, correction: Correction) -> Correction:
        """Keep a correction; the next answer for its incident uses it."""

        def add(session: Session) -> Correction:
            session.add(correction)
            session.flush()
            return correction

        return await self.transaction(add)

    async def corrections(self, incident: str, *, limit: int = 100) -> list[Correction]:
        """The corrections of an incident's answers, newest first."""

        def read(session: Session) -> list[Correction]:
            query = select(Correction).where(Correction.incident == incident)
            return list(session.scalars(query.order_by(Correction.id.desc()).limit(limit)))

        return await self.transaction(read)

    async def add_alerts(self, alerts: list[AlertRecord]) -> list[AlertRecord]:
        """Store received alerts in one transaction; the webhook is acknowledged after this returns."""

        def add(session: Session) -> list[AlertRecord]:
            session.add_all(alerts)
            session.flush()
            return alerts

        return await self.transaction(add)

    async def unposted_alerts(self, group_key: str | None = None, *, limit: int = 10_000) -> list[AlertRecord]:
        """Alerts stored but not yet in Slack (e.g. received just before a restart), oldest first."""

        def read(session: Session) -> list[AlertRecord]:
            query = select(AlertRecord).where(AlertRecord.posted_at.is_(None))
            if group_key is not None:
                query = query.where(AlertRecord.group_key == group_key)
            return list(session.scalars(query.order_by(AlertRecord.id).limit(limit)))

        return await self.transaction(read)

    async def mark_alerts_posted(self, ids: list[int]) -> None:
        def mark(session: Session) -> None:
            for row in session.scalars(select(AlertRecord).where(AlertRecord.id.in_(ids))):
                row.posted_at = _now()

        await self.transaction(mark)

    async def alert_thread(self, group_key: str) -> AlertThread | None:
        return await self.transaction(lambda session: session.get(AlertThread, group_key))

    async def save_alert_thread(self, thread: AlertThread) -> AlertThread:
        return await self.transaction(lambda session: session.merge(thread))


class Correction(Record):
    """What people corrected about an incident's answers, applied to the next answer at once: an Edit
    (``workflow``) or a step flagged wrong (``step_text``). Valid while the documents in ``doc_hashes``
    are unchanged; training reads the ``feedback`` table, not this one."""

    __tablename__ = "corrections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(default=_now, index=True)
    incident: Mapped[str] = mapped_column(String(500), index=True)  # the answer's leading runbook
    interaction_id: Mapped[int] = mapped_column(ForeignKey("interactions.id", ondelete="CASCADE"))
    user: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))  # edit | wrong_step
    workflow: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)  # Workflow.model_dump
    step_text: Mapped[str] = mapped_column(Text, default="")
    doc_hashes: Mapped[dict[str, Any]] = mapped_column(default=dict)  # doc id -> content hash when corrected
