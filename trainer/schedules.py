"""Training schedules: cron jobs that retrain once enough new feedback has come in.

APScheduler 3.11's ``AsyncIOScheduler`` keeps the jobs in the record database (its SQLAlchemy job
store), so schedules survive restarts and every replica sees the same ones. Only the replica holding
the ``scheduler`` lease runs them; the others keep their scheduler paused and try to take the lease
each time it could have expired. A lease is a row taken with one atomic UPDATE (free, expired, or
already ours) or INSERT (new), on SQLite and PostgreSQL alike, and renewed while held.

A run trains only when its target got ``min_new_feedback`` feedback since it was last trained (else it
is logged and skipped), and runs hold the ``training`` lease, so trainings happen one at a time
across processes (``opsflow schedule run`` included).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from apscheduler.events import EVENT_SCHEDULER_SHUTDOWN, SchedulerEvent  # type: ignore[import-untyped]
from apscheduler.jobstores.base import JobLookupError  # type: ignore[import-untyped]
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore  # type: ignore[import-untyped]
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]
from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError, ProgrammingError
from sqlalchemy.orm import Session

from core.errors import BackendUnavailable, ConfigError
from trainer.jobs import Method, Target
from trainer.registry import ModelRegistry
from trainer.store import Feedback, Lease, RecordStore

log = logging.getLogger(__name__)

JOB_FUNC = "trainer.schedules:fire"  # stored by reference in the job store: keep this name importable
JOB_TABLE = "schedule_jobs"
SCHEDULER_LEASE = "scheduler"
TRAINING_LEASE = "training"
TRAINING_TTL = dt.timedelta(hours=6)  # a crashed run frees the training lease after this
MISFIRE_GRACE_S = 3600  # a run missed while no replica led still happens within the hour


class ScheduleSpec(BaseModel):
    """A named schedule: when (cron, five fields) and which training job."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
    cron: str
    timezone: str = "UTC"
    method: Method = "dpo"
    target: Target = "planner"
    min_new_feedback: int | None = Field(None, ge=0, description="None: the settings' train.min_new_feedback.")
    added_by: str = ""

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        return " ".join(value.split())

    @model_validator(mode="after")
    def _valid_cron(self) -> ScheduleSpec:
        self.trigger()
        return self

    def trigger(self) -> CronTrigger:
        try:
            return CronTrigger.from_crontab(self.cron, timezone=self.timezone)
        except (ValueError, LookupError) as exc:  # LookupError: an unknown time zone
            raise ValueError(f"invalid cron expression {self.cron!r} ({self.timezone}): {exc}") from exc


class ScheduleInfo(BaseModel):
    """A stored schedule and when it runs next (None while paused)."""

    model_config = ConfigDict(frozen=True)

    spec: ScheduleSpec
    next_run: dt.datetime | None


class RunResult(BaseModel):
    """What a scheduled or manual run did: trained (``ran``) or skipped, and why."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    ran: bool
    reason: str
    result: Any = None


Runner = Callable[[ScheduleSpec], Awaitable[Any]]
"""The training use case a run calls (export → train → gate → registry); lives in the bot."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Leases:
    """Named leases in the record store, held by ``owner``."""

    def __init__(self, records: RecordStore, owner: str) -> None:
        self._records = records
        self.owner = owner

    async def acquire(self, name: str, ttl: dt.timedelta) -> bool:
        """Take or renew ``name`` until now + ``ttl``; False while another owner holds it unexpired."""

        def take(session: Session) -> bool:
            now = _now()
            mine_or_free = or_(Lease.owner == self.owner, Lease.expires_at < now)
            renew = update(Lease).where(Lease.name == name, mine_or_free).values(owner=self.owner, expires_at=now + ttl)
            if session.execute(renew).rowcount:  # type: ignore[attr-defined]
                return True
            try:
                with session.begin_nested():
                    session.add(Lease(name=name, owner=self.owner, expires_at=now + ttl))
            except IntegrityError:  # it exists and someone else holds it
                return False
            return True

        return await self._records.transaction(take)

    async def release(self, name: str) -> None:
        """Give ``name`` up if this owner holds it."""

        def drop(session: Session) -> None:
            session.execute(delete(Lease).where(Lease.name == name, Lease.owner == self.owner))

        await self._records.transaction(drop)

    async def holder(self, name: str) -> str | None:
        """Who holds ``name`` now; None when it is free or expired."""

        def read(session: Session) -> str | None:
            lease = session.get(Lease, name)
            return lease.owner if lease is not None and lease.expires_at > _now() else None

        return await self._records.transaction(read)


async def feedback_since(records: RecordStore, since: dt.datetime | None) -> int:
    """Feedback given or changed after ``since`` (all of it for None)."""

    def count(session: Session) -> int:
        query = select(func.count()).select_from(Feedback)
        if since is not None:
            query = query.where(Feedback.updated_at > since)
        return int(session.scalar(query) or 0)

    return await records.transaction(count)


# APScheduler's job store keeps only a text reference to a module-level function, never an object:
# the scheduler leading in this process registers itself here for ``fire`` to reach its runner.
_leader: TrainingScheduler | None = None


async def fire(**spec: Any) -> None:
    """The stored job: run the schedule through this process's leading scheduler."""
    leader = _leader
    if leader is None:
        log.warning("schedule %s fired with no leading scheduler in this process", spec.get("name"))
        return
    try:
        result = await leader.trigger(ScheduleSpec.model_validate(spec))
    except Exception:  # the scheduler's job wrapper: one failed run must not stop the next ones
        log.exception("scheduled training %s failed", spec.get("name"))
        return
    log.info("schedule %s: %s", spec.get("name"), result.reason)


class TrainingScheduler:
    """Stored training schedules, run on the replica that holds the scheduler lease."""

    def __init__(
        self,
        records: RecordStore,
        runner: Runner,
        *,
        min_new_feedback: int,
        lease_s: float = 60.0,
        owner: str | None = None,
    ) -> None:
        self._records = records
        self._runner = runner
        self._min_new_feedback = min_new_feedback
        self._lease = dt.timedelta(seconds=lease_s)
        self._leases = Leases(records, owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}")
        self._registry = ModelRegistry(records)
        self._scheduler: AsyncIOScheduler | None = None
        self._holding: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._one_at_a_time = asyncio.Lock()
        self.leading = False

    @property
    def owner(self) -> str:
        return self._leases.owner

    async def start(self, *, lead: bool = True) -> None:
        """Open the job store (paused); with ``lead``, compete for the lease and run jobs while holding it."""
        loop = asyncio.get_running_loop()

        def new_scheduler() -> AsyncIOScheduler:
            return AsyncIOScheduler(
                jobstores={"default": SQLAlchemyJobStore(url=self._records.url, tablename=JOB_TABLE)},
                job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": MISFIRE_GRACE_S},
                event_loop=loop,
                timezone="UTC",
            )

        def open_store() -> AsyncIOScheduler:  # the job store connects (blocking) as it is created
            scheduler = new_scheduler()
            try:
                scheduler.start(paused=True)
            except (IntegrityError, ProgrammingError):  # another replica created the job table at the same moment
                scheduler = new_scheduler()
                scheduler.start(paused=True)
            return scheduler

        scheduler = await asyncio.to_thread(open_store)
        self._scheduler = scheduler
        if lead:
            self._holding = asyncio.create_task(self._hold(), name="schedule-lease")

    async def aclose(self) -> None:
        """Stop running jobs, give the lease up and close the job store."""
        self._stopping.set()
        if self._holding is not None:
            await self._holding
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is None:
            return
        stopped = asyncio.Event()

        def on_shutdown(_event: SchedulerEvent) -> None:
            stopped.set()

        scheduler.add_listener(on_shutdown, EVENT_SCHEDULER_SHUTDOWN)
        scheduler.shutdown(wait=False)  # runs on the loop: AsyncIOScheduler hands it over with call_soon
        await stopped.wait()

    async def add(self, spec: ScheduleSpec, *, actor: str) -> tuple[ScheduleInfo, bool]:
        """Store the schedule (replacing one of the same name); returns it and whether it replaced one."""
        scheduler = self._running()

        def add() -> tuple[Any, bool]:
            existed = scheduler.get_job(spec.name) is not None
            job = scheduler.add_job(
                JOB_FUNC, spec.trigger(), id=spec.name, name=spec.name, kwargs=spec.model_dump(), replace_existing=True
            )
            return job, existed

        job, replaced = await asyncio.to_thread(add)
        await self._records.audit(actor, "schedule.add", spec.model_dump())
        return ScheduleInfo(spec=spec, next_run=job.next_run_time), replaced

    async def remove(self, name: str, *, actor: str) -> bool:
        """Delete the schedule; False when there is none of that name."""
        scheduler = self._running()
        try:
            await asyncio.to_thread(scheduler.remove_job, name)
        except JobLookupError:
            return False
        await self._records.audit(actor, "schedule.remove", {"name": name})
        return True

    async def list(self) -> list[ScheduleInfo]:
        """Every stored schedule, by name."""
        jobs = await asyncio.to_thread(self._running().get_jobs)
        infos = [ScheduleInfo(spec=ScheduleSpec.model_validate(j.kwargs), next_run=j.next_run_time) for j in jobs]
        return sorted(infos, key=lambda i: i.spec.name)

    async def run(self, name: str, *, force: bool = False) -> RunResult:
        """Run a stored schedule now (``force``: even without enough new feedback)."""
        job = await asyncio.to_thread(self._running().get_job, name)
        if job is None:
            raise ConfigError(f"there is no schedule named {name!r}")
        return await self.trigger(ScheduleSpec.model_validate(job.kwargs), force=force)

    async def trigger(self, spec: ScheduleSpec, *, force: bool = False) -> RunResult:
        """Train for ``spec`` if there is enough new feedback and no other training runs."""
        async with self._one_at_a_time:
            if not force:
                since = await self._registry.last_trained_at(spec.target)
                new = await feedback_since(self._records, since)
                needed = self._min_new_feedback if spec.min_new_feedback is None else spec.min_new_feedback
                if new < needed:
                    reason = f"skipped: {new} new feedback since the last {spec.target} training, {needed} needed"
                    log.info("schedule %s %s", spec.name, reason)
                    return RunResult(ran=False, reason=reason)
            async with self._training() as free:
                if not free:
                    return RunResult(ran=False, reason="skipped: another training is running")
                result = await self._runner(spec)
            return RunResult(ran=True, reason=f"trained {spec.method} for the {spec.target}", result=result)

    @contextlib.asynccontextmanager
    async def _training(self) -> AsyncIterator[bool]:
        free = await self._leases.acquire(TRAINING_LEASE, TRAINING_TTL)
        try:
            yield free
        finally:
            if free:
                await self._leases.release(TRAINING_LEASE)

    def _running(self) -> AsyncIOScheduler:
        if self._scheduler is None:
            raise RuntimeError("start() the scheduler first")
        return self._scheduler

    async def _hold(self) -> None:
        """Take or renew the lease every third of its length; lead while it is held."""
        global _leader
        scheduler = self._running()
        try:
            while not self._stopping.is_set():
                try:
                    held = await self._leases.acquire(SCHEDULER_LEASE, self._lease)
                except BackendUnavailable as exc:
                    log.warning("cannot renew the scheduler lease: %s", exc)
                    held = False
                if held != self.leading:
                    self.leading = held
                    if held:
                        scheduler.resume()
                    else:
                        scheduler.pause()
                    _leader = self if held else None
                    log.info("%s %s the training schedules", self.owner, "leads" if held else "no longer leads")
                if held:
                    scheduler.wakeup()  # see schedules other processes added since
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._lease.total_seconds() / 3)
        finally:
            if self.leading:
                scheduler.pause()
                _leader, self.leading = None, False
                await self._leases.release(SCHEDULER_LEASE)
