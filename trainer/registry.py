"""The model registry: trained planner and scorer versions in the record store, and which one is served.

A version is a ``candidate`` until the gate decides; then ``promoted`` (served) or ``rejected``. At
most one version per target is promoted: promoting retires the previous one, and a rollback rejects
the promoted version and re-promotes the one retired most recently (or leaves the base model when
there is none). Each of these is one transaction with its audit event, so a reader never sees two
promoted versions, and no promotion happens without its record.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import false, select, update
from sqlalchemy.orm import Session

from core.errors import TrainingError
from trainer.jobs import Target
from trainer.store import AuditEvent, ModelVersion, RecordStore


def version_name(version: ModelVersion) -> str:
    """How answers and listings name a version: ``planner-v3``."""
    return f"{version.target}-v{version.id}"


class ModelRegistry:
    """Versions of the trained models, over the ``model_versions`` table."""

    def __init__(self, records: RecordStore) -> None:
        self._records = records

    async def add_candidate(
        self,
        *,
        target: Target,
        method: str,
        base: str,
        adapter: str | None,
        data_hash: str,
        metrics: dict[str, Any],
        trigger: str,
    ) -> ModelVersion:
        """Record a freshly trained version, not yet served."""
        version = ModelVersion(
            target=target,
            method=method,
            base=base,
            adapter=adapter,
            data_hash=data_hash,
            metrics=metrics,
            trigger=trigger,
            status="candidate",
        )

        def add(session: Session) -> ModelVersion:
            session.add(version)
            session.flush()
            return version

        return await self._records.transaction(add)

    async def get(self, version_id: int) -> ModelVersion | None:
        return await self._records.transaction(lambda session: session.get(ModelVersion, version_id))

    async def list(self, target: Target | None = None) -> list[ModelVersion]:
        """Every version, newest first."""

        def read(session: Session) -> list[ModelVersion]:
            query = select(ModelVersion).order_by(ModelVersion.id.desc())
            if target is not None:
                query = query.where(ModelVersion.target == target)
            return list(session.scalars(query))

        return await self._records.transaction(read)

    async def promoted(self, target: Target) -> ModelVersion | None:
        """The version serving ``target`` now; None means the base model."""

        def read(session: Session) -> ModelVersion | None:
            query = select(ModelVersion).where(ModelVersion.target == target, ModelVersion.status == "promoted")
            return session.scalars(query.order_by(ModelVersion.promoted_at.desc())).first()

        return await self._records.transaction(read)

    async def last_trained_at(self, target: Target) -> dt.datetime | None:
        """When the newest version of ``target`` was recorded, whatever became of it."""

        def read(session: Session) -> dt.datetime | None:
            query = select(ModelVersion.created_at).where(ModelVersion.target == target)
            return session.scalars(query.order_by(ModelVersion.created_at.desc()).limit(1)).first()

        return await self._records.transaction(read)

    async def update_metrics(self, version_id: int, metrics: dict[str, Any]) -> ModelVersion:
        """Merge ``metrics`` into the version's metrics (e.g. the gate's before/after)."""

        def merge(session: Session) -> ModelVersion:
            version = _get(session, version_id)
            version.metrics = {**version.metrics, **metrics}
            return version

        return await self._records.transaction(merge)

    async def promote(self, version_id: int, *, actor: str, reason: str = "") -> ModelVersion:
        """Serve this version: the previously promoted one of its target is retired, atomically."""

        def promote(session: Session) -> ModelVersion:
            version = _get(session, version_id)
            previous = _lock_promoted(session, version.target)
            if version.status == "promoted":
                return version
            for old in previous:
                old.status = "retired"
            version.status, version.promoted_at = "promoted", _now()
            detail = {"version": version.id, "target": version.target, "retired": [v.id for v in previous]}
            session.add(_event(actor, "models.promote", detail | ({"reason": reason} if reason else {})))
            return version

        return await self._records.transaction(promote)

    async def reject(self, version_id: int, *, actor: str, reason: str) -> ModelVersion:
        """Mark a candidate as refused (by the gate or a person); a served version is rolled back instead."""

        def reject(session: Session) -> ModelVersion:
            version = _get(session, version_id)
            _lock_promoted(session, version.target)
            if version.status == "promoted":
                raise TrainingError(f"{version_name(version)} is being served: roll it back instead")
            version.status = "rejected"
            session.add(_event(actor, "models.reject", {"version": version.id, "reason": reason}))
            return version

        return await self._records.transaction(reject)

    async def rollback(self, target: Target, *, actor: str) -> tuple[ModelVersion, ModelVersion | None]:
        """Stop serving ``target``'s promoted version and re-promote the one retired last (None: the base
        model is served again). Returns (rolled back, now served)."""

        def rollback(session: Session) -> tuple[ModelVersion, ModelVersion | None]:
            current = _lock_promoted(session, target)
            if not current:
                raise TrainingError(f"no {target} version is promoted; nothing to roll back")
            query = select(ModelVersion).where(ModelVersion.target == target, ModelVersion.status == "retired")
            previous = session.scalars(query.order_by(ModelVersion.promoted_at.desc()).limit(1)).first()
            for version in current:
                version.status = "rejected"
            if previous is not None:
                previous.status, previous.promoted_at = "promoted", _now()
            detail = {"target": target, "rolled_back": [v.id for v in current], "now": previous and previous.id}
            session.add(_event(actor, "models.rollback", detail))
            return current[0], previous

        return await self._records.transaction(rollback)


def _get(session: Session, version_id: int) -> ModelVersion:
    version = session.get(ModelVersion, version_id)
    if version is None:
        raise TrainingError(f"there is no model version {version_id}")
    return version


def _lock_promoted(session: Session, target: str) -> list[ModelVersion]:
    """The promoted versions of ``target``, read fresh after locking it, so that promotions and rollbacks
    of one target run one after the other."""
    # SQLite ignores FOR UPDATE, and pysqlite begins no transaction before a SELECT: an UPDATE (of no
    # row) takes the database's write lock first. PostgreSQL locks the rows, in id order (two
    # transactions taking them in different orders would deadlock).
    session.execute(update(ModelVersion).where(ModelVersion.target == target, false()).values(target=target))
    query = (
        select(ModelVersion)
        .where(ModelVersion.target == target)
        .order_by(ModelVersion.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return [v for v in session.scalars(query) if v.status == "promoted"]


def _event(actor: str, action: str, detail: dict[str, Any]) -> AuditEvent:
    return AuditEvent(at=_now(), actor=actor, action=action, detail=detail)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
