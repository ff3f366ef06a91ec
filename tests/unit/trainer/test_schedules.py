"""Training schedules: stored in the record database, led by one scheduler, gated on new feedback."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable

import pytest
from pydantic import ValidationError

from core.errors import ConfigError
from trainer.registry import ModelRegistry
from trainer.schedules import (
    SCHEDULER_LEASE,
    Leases,
    ScheduleSpec,
    TrainingScheduler,
    fire,
)
from trainer.store import Interaction, RecordStore

BOTH = pytest.mark.parametrize("records_url", ["sqlite", "postgresql"], indirect=True)


class Runs:
    """The training use case, recording what it was asked to train (optionally slowly)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.specs: list[ScheduleSpec] = []
        self.delay = delay

    async def __call__(self, spec: ScheduleSpec) -> str:
        self.specs.append(spec)
        await asyncio.sleep(self.delay)
        return f"trained {spec.name}"


@pytest.fixture
async def open_scheduler(records: RecordStore) -> AsyncIterator[Callable[..., object]]:
    """Start schedulers on the test's database; all are closed at the end."""
    started: list[TrainingScheduler] = []

    async def start(runs: Runs | None = None, *, lead: bool = True, **options: object) -> TrainingScheduler:
        scheduler = TrainingScheduler(records, runs or Runs(), **{"min_new_feedback": 0, **options})  # type: ignore[arg-type]
        await scheduler.start(lead=lead)
        started.append(scheduler)
        return scheduler

    yield start
    for scheduler in reversed(started):
        await scheduler.aclose()


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait for a scheduler to see the lease change: it looks at the database, so there is no event to await."""
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("cron", "problem"),
    [("0 3 * * 1", None), ("*/15 * * * *", None), ("61 * * * *", "invalid cron"), ("0 3 * *", "invalid cron")],
)
def test_cron_expressions_are_checked_before_saving(cron: str, problem: str | None) -> None:
    if problem is None:
        assert ScheduleSpec(name="nightly", cron=cron).cron == cron
    else:
        with pytest.raises(ValidationError, match=problem):
            ScheduleSpec(name="nightly", cron=cron)


def test_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValidationError, match="invalid cron"):
        ScheduleSpec(name="nightly", cron="0 3 * * *", timezone="Mars/Olympus")


@BOTH
async def test_schedules_survive_a_restart(records: RecordStore, open_scheduler: Callable[..., object]) -> None:
    first: TrainingScheduler = await open_scheduler(lead=False)  # type: ignore[assignment]
    spec = ScheduleSpec(name="nightly-dpo", cron="0 3 * * *", method="dpo", target="planner", min_new_feedback=5)
    info, replaced = await first.add(spec, actor="alice")
    assert not replaced and info.next_run is not None and info.next_run.hour == 3
    await first.aclose()

    again = TrainingScheduler(records, Runs(), min_new_feedback=0)
    await again.start(lead=False)
    try:
        listed = await again.list()
        assert [i.spec for i in listed] == [spec]
        assert listed[0].next_run == info.next_run
        _, replaced = await again.add(spec.model_copy(update={"cron": "0 4 * * *"}), actor="bob")
        assert replaced and [i.spec.cron for i in await again.list()] == ["0 4 * * *"]
        assert await again.remove("nightly-dpo", actor="bob") and not await again.remove("nightly-dpo", actor="bob")
        assert await again.list() == []
    finally:
        await again.aclose()
    assert [e.action for e in await records.audit_log()] == ["schedule.remove", "schedule.add", "schedule.add"]


@BOTH
async def test_only_one_of_two_schedulers_leads_and_the_other_takes_over(
    records: RecordStore, open_scheduler: Callable[..., object]
) -> None:
    a: TrainingScheduler = await open_scheduler(lease_s=1.5, owner="replica-a")  # type: ignore[assignment]
    await until(lambda: a.leading)
    b: TrainingScheduler = await open_scheduler(lease_s=1.5, owner="replica-b")  # type: ignore[assignment]
    await asyncio.sleep(1.0)  # b tried at least twice meanwhile
    assert (a.leading, b.leading) == (True, False)
    assert await Leases(records, "observer").holder(SCHEDULER_LEASE) == "replica-a"
    await a.aclose()
    await until(lambda: b.leading)
    assert await Leases(records, "observer").holder(SCHEDULER_LEASE) == "replica-b"


@BOTH
async def test_a_lease_is_taken_atomically_by_exactly_one_of_many(records: RecordStore) -> None:
    contenders = [Leases(records, f"owner-{n}") for n in range(8)]
    taken = await asyncio.gather(*(c.acquire("role", dt.timedelta(seconds=30)) for c in contenders))
    assert taken.count(True) == 1
    winner = contenders[taken.index(True)]
    assert await winner.acquire("role", dt.timedelta(seconds=30))  # renewing one's own lease
    assert not await contenders[taken.index(False)].acquire("role", dt.timedelta(seconds=30))
    await winner.release("role")
    assert await contenders[0].acquire("role", dt.timedelta(seconds=30))


async def test_an_expired_lease_can_be_taken(records: RecordStore) -> None:
    assert await Leases(records, "gone").acquire("role", dt.timedelta(seconds=-1))
    assert await Leases(records, "next").acquire("role", dt.timedelta(seconds=30))


async def vote(records: RecordStore, users: int) -> None:
    interaction = await records.add_interaction(Interaction(origin="cli", query="disk full"))
    for n in range(users):
        await records.record_feedback(interaction.id, f"user{n}", via="reaction", vote=1)


async def test_a_run_needs_enough_new_feedback_since_the_last_training(
    records: RecordStore, open_scheduler: Callable[..., object]
) -> None:
    runs = Runs()
    scheduler: TrainingScheduler = await open_scheduler(runs, lead=False, min_new_feedback=3)  # type: ignore[assignment]
    await scheduler.add(ScheduleSpec(name="nightly", cron="0 3 * * *"), actor="alice")
    await vote(records, 2)
    skipped = await scheduler.run("nightly")
    assert not skipped.ran and skipped.reason == "skipped: 2 new feedback since the last planner training, 3 needed"
    assert runs.specs == []
    await vote(records, 1)
    ran = await scheduler.run("nightly")
    assert ran.ran and ran.result == "trained nightly" and [s.name for s in runs.specs] == ["nightly"]

    await ModelRegistry(records).add_candidate(
        target="planner", method="dpo", base="b", adapter=None, data_hash="h", metrics={}, trigger="nightly"
    )
    assert not (await scheduler.run("nightly")).ran  # the feedback was used by that training
    assert (await scheduler.run("nightly", force=True)).ran
    with pytest.raises(ConfigError, match="no schedule named 'weekly'"):
        await scheduler.run("weekly")


async def test_a_schedule_with_its_own_threshold(records: RecordStore, open_scheduler: Callable[..., object]) -> None:
    scheduler: TrainingScheduler = await open_scheduler(lead=False, min_new_feedback=100)  # type: ignore[assignment]
    await scheduler.add(ScheduleSpec(name="eager", cron="0 * * * *", min_new_feedback=1), actor="alice")
    await vote(records, 1)
    assert (await scheduler.run("eager")).ran


async def test_trainings_run_one_at_a_time_across_schedulers(
    records: RecordStore, open_scheduler: Callable[..., object]
) -> None:
    runs = Runs(delay=0.5)
    one: TrainingScheduler = await open_scheduler(runs, lead=False)  # type: ignore[assignment]
    two: TrainingScheduler = await open_scheduler(runs, lead=False)  # type: ignore[assignment]
    spec = ScheduleSpec(name="nightly", cron="0 3 * * *")
    first, second = await asyncio.gather(one.trigger(spec), two.trigger(spec))
    assert sorted([first.ran, second.ran]) == [False, True]
    assert "another training is running" in (first if not first.ran else second).reason
    assert (await one.trigger(spec)).ran  # the lease was given back


async def test_the_stored_job_runs_through_the_leading_scheduler(
    records: RecordStore, open_scheduler: Callable[..., object]
) -> None:
    runs = Runs()
    spec = ScheduleSpec(name="nightly", cron="0 3 * * *", method="kto")
    await fire(**spec.model_dump())  # no scheduler leads in this process: nothing runs
    assert runs.specs == []
    leader: TrainingScheduler = await open_scheduler(runs)  # type: ignore[assignment]
    await until(lambda: leader.leading)
    await leader.add(spec, actor="alice")
    (stored,) = await leader.list()
    await fire(**stored.spec.model_dump())
    assert runs.specs == [spec]
