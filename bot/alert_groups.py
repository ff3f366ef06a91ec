"""Alert threads being opened, and the counts replicas share: the bot's records of its alert groups.

A new thread is announced before it is posted: ``intend`` records a token that the thread's first
message carries (as its header's ``block_id``); ``settle`` saves the thread, marks its alerts posted
and clears the intent in one transaction. A crash in between leaves the intent, and whoever takes the
group next looks for the message in the channel before posting another. (Which replica posts a group
is decided by a lease, ``trainer.schedules.Leases``, named by ``lease_name``.)
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import String, delete, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from bot.records import AlertRecord, AlertThread
from trainer.store import Record, RecordStore


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AlertIntent(Record):
    """A thread about to be posted for an alert group: the token its first message carries, and where."""

    __tablename__ = "alert_intents"

    group_key: Mapped[str] = mapped_column(String(300), primary_key=True)
    token: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(100))
    at: Mapped[dt.datetime] = mapped_column(default=_now)


def lease_name(group_key: str) -> str:
    """The name of the lease a replica holds while it posts the group (lease names are short)."""
    return "alert-group:" + hashlib.sha256(group_key.encode()).hexdigest()


async def intend(records: RecordStore, group_key: str, token: str, channel: str) -> None:
    """Record that a thread carrying ``token`` is about to be posted in ``channel`` for the group."""
    intent = AlertIntent(group_key=group_key, token=token, channel=channel, at=_now())
    await records.transaction(lambda session: session.merge(intent))


async def intent(records: RecordStore, group_key: str) -> AlertIntent | None:
    """The thread the group was opening when the last attempt stopped, if any."""
    return await records.transaction(lambda session: session.get(AlertIntent, group_key))


async def settle(records: RecordStore, thread: AlertThread, posted: Sequence[int]) -> None:
    """Save the group's thread, mark alerts ``posted`` (row ids) and clear any intent, in one transaction."""

    def save(session: Session) -> None:
        session.merge(thread)
        session.execute(update(AlertRecord).where(AlertRecord.id.in_(list(posted))).values(posted_at=_now()))
        session.execute(delete(AlertIntent).where(AlertIntent.group_key == thread.group_key))

    await records.transaction(save)


async def waiting_groups(records: RecordStore) -> list[str]:
    """Groups with alerts not yet posted or a thread being opened: the work left by the last run."""

    def read(session: Session) -> list[str]:
        unposted = select(AlertRecord.group_key).where(AlertRecord.posted_at.is_(None)).distinct()
        opening = select(AlertIntent.group_key)
        return list(dict.fromkeys([*session.scalars(unposted), *session.scalars(opening)]))

    return await records.transaction(read)


async def unposted_count(records: RecordStore) -> int:
    """How many stored alerts, of every replica, wait to be posted."""

    def count(session: Session) -> int:
        return int(session.scalar(select(func.count()).where(AlertRecord.posted_at.is_(None))) or 0)

    return await records.transaction(count)


def header_block_id(token: str) -> str:
    """The ``block_id`` that marks a thread's first message as the one of an intent."""
    return f"opsflow-alert-{token}"


def carries(message: dict[str, Any], token: str) -> bool:
    """Whether a message from ``conversations.history`` is the thread posted under ``token``."""
    blocks = message.get("blocks")
    return isinstance(blocks, list) and any(
        isinstance(b, dict) and b.get("block_id") == header_block_id(token) for b in blocks
    )
