"""The learning loop's commands: ``opsflow train``, ``opsflow models`` and ``opsflow schedule``.

``bot.cli`` adds the three groups to ``opsflow``.
"""

from __future__ import annotations

import getpass
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from bot.app import open_knowledge
from bot.cli_common import load_settings, print_json, run
from bot.training import Training, TrainingOutcome, open_training
from core.settings import Settings
from trainer.jobs import JobProgress, Method, Target
from trainer.registry import version_name
from trainer.schedules import ScheduleInfo, ScheduleSpec, TrainingScheduler
from trainer.store import ModelVersion

T = TypeVar("T")
_METHOD = click.Choice(["sft", "dpo", "grpo", "kto"])
_TARGET = click.option(
    "--target", type=click.Choice(["planner", "scorer"]), default="planner", show_default=True, help="What to train."
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _with_training(settings: Settings, work: Callable[[Training, TrainingScheduler], Awaitable[T]]) -> T:
    async def with_training() -> T:
        async with open_knowledge(settings) as kb, open_training(settings, kb, lead=False) as (training, scheduler):
            return await work(training, scheduler)

    return run(with_training())


# -- train ---------------------------------------------------------------------------------------


@click.group("train")
def train_group() -> None:
    """Training data and training jobs."""


@train_group.command("export")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Default: <adapters>/datasets/<hash>.")
@_JSON
def export_command(out: Path | None, as_json: bool) -> None:
    """Write the training datasets (JSONL in trl's formats) and print their sizes."""
    report = _with_training(load_settings(), lambda training, _: training.export(out))
    if as_json:
        print_json({"out": str(report.out), **report.manifest})
        return
    click.echo(f"datasets in {report.out} (snapshot {report.manifest['snapshot']})")
    for name, size in report.manifest["sizes"].items():
        click.echo(f"  {name:7} {size['train']:6} train {size['eval']:6} eval")
    click.echo(f"  held-back evaluation cases: {report.manifest['heldout_cases']}")
    if report.left_out:
        click.echo(f"{report.left_out} judged answers were left out: their context was not kept whole", err=True)


@train_group.command("run")
@click.argument("method", type=_METHOD)
@_TARGET
@click.option("--steps", type=click.IntRange(1), default=None, help="Training steps (default: the job's).")
@click.option("--batch-size", type=click.IntRange(1), default=None)
@click.option("--learning-rate", type=click.FloatRange(0, 1, min_open=True), default=None)
@click.option("--max-length", type=click.IntRange(16), default=None, help="Tokens per row (default: llamacpp.n_ctx).")
@click.option(
    "--max-completion-length", type=click.IntRange(8), default=None, help="grpo: tokens generated per completion."
)
@click.option(
    "--init-adapter",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="A PEFT adapter directory to train further (an earlier job's <output>/adapter: SFT's, before DPO).",
)
@_JSON
def run_command(
    method: Method,
    target: Target,
    steps: int | None,
    batch_size: int | None,
    learning_rate: float | None,
    max_length: int | None,
    max_completion_length: int | None,
    init_adapter: Path | None,
    as_json: bool,
) -> None:
    """Train METHOD (sft, dpo, grpo, kto) for the target, gate the candidate, promote it if it does not regress."""
    settings = load_settings()
    given = {
        "max_steps": steps,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "max_length": max_length,
        "max_completion_length": max_completion_length,
        "init_adapter": init_adapter,
    }
    options = {k: v for k, v in given.items() if v is not None}

    async def progress(report: JobProgress) -> None:
        loss = f" loss {report.loss:.4f}" if report.loss is not None else ""
        click.echo(f"[{report.seconds:6.1f}s] {report.stage} {report.step}/{report.max_steps}{loss}", err=True)

    async def work(training: Training, _: TrainingScheduler) -> TrainingOutcome:
        return await training.train(method, target, trigger=getpass.getuser(), on_progress=progress, **options)

    try:
        outcome = _with_training(settings, work)
    except ValidationError as exc:
        raise click.ClickException(f"invalid training job:\n{exc}") from exc
    if as_json:
        print_json({**version_json(outcome.version), "job": outcome.job.model_dump(mode="json")})
        return
    version = outcome.version
    click.echo(f"{version_name(version)} ({version.method}, data {version.data_hash}): {version.status}")
    gate = version.metrics.get("gate")
    if gate:
        click.echo(f"  against {gate['against']}: " + "; ".join(gate["reasons"]))
    elif outcome.decision is None:
        click.echo("  not gated: " + (outcome.job.gguf_error or "no adapter to serve"))


# -- models --------------------------------------------------------------------------------------


def version_json(version: ModelVersion) -> dict[str, Any]:
    return {
        "id": version.id,
        "name": version_name(version),
        "target": version.target,
        "method": version.method,
        "status": version.status,
        "base": version.base,
        "adapter": version.adapter,
        "data_hash": version.data_hash,
        "trigger": version.trigger,
        "created_at": version.created_at.isoformat(),
        "promoted_at": version.promoted_at.isoformat() if version.promoted_at else None,
        "metrics": version.metrics,
    }


@click.group("models")
def models_group() -> None:
    """Trained model versions: list, promote, roll back."""


@models_group.command("list")
@click.option("--target", type=click.Choice(["planner", "scorer"]), default=None, help="Only this target.")
@_JSON
def models_list_command(target: Target | None, as_json: bool) -> None:
    """Every trained version, newest first, with its gate metrics."""
    versions = _with_training(load_settings(), lambda training, _: training.registry.list(target))
    if as_json:
        print_json([version_json(v) for v in versions])
        return
    if not versions:
        click.echo("no trained versions yet: `opsflow train run dpo` makes one")
    for v in versions:
        gate = v.metrics.get("gate") or {}
        f1 = (
            f"overall_f1 {gate['before']['overall_f1']:.3f} → {gate['after']['overall_f1']:.3f}"
            if gate
            else "not gated"
        )
        click.echo(f"{v.id:4}  {version_name(v):14} {v.method:5} {v.status:9} {v.created_at:%Y-%m-%d %H:%M}  {f1}")


@models_group.command("promote")
@click.argument("version_id", type=int)
def models_promote_command(version_id: int) -> None:
    """Serve VERSION_ID now (bypassing the gate); the version it replaces is retired."""
    settings = load_settings()

    async def work(training: Training, _: TrainingScheduler) -> ModelVersion:
        return await training.registry.promote(version_id, actor=getpass.getuser(), reason="by hand")

    version = _with_training(settings, work)
    click.echo(f"{version_name(version)} is now served")


@models_group.command("rollback")
@_TARGET
def models_rollback_command(target: Target) -> None:
    """Stop serving the promoted version; the one before it (or the base model) serves again."""

    async def work(training: Training, _: TrainingScheduler) -> tuple[ModelVersion, ModelVersion | None]:
        return await training.registry.rollback(target, actor=getpass.getuser())

    rolled, now = _with_training(load_settings(), work)
    click.echo(f"{version_name(rolled)} rolled back; now serving {version_name(now) if now else 'the base model'}")


# -- schedule ------------------------------------------------------------------------------------


def schedule_json(info: ScheduleInfo) -> dict[str, Any]:
    return {**info.spec.model_dump(), "next_run": info.next_run.isoformat() if info.next_run else None}


@click.group("schedule")
def schedule_group() -> None:
    """Scheduled retraining (run by `opsflow serve`)."""


@schedule_group.command("add")
@click.argument("name")
@click.argument("cron")
@click.option("--method", type=_METHOD, default="dpo", show_default=True)
@_TARGET
@click.option("--min-feedback", type=click.IntRange(0), default=None, help="Default: OPSFLOW_TRAIN__MIN_NEW_FEEDBACK.")
def schedule_add_command(name: str, cron: str, method: Method, target: Target, min_feedback: int | None) -> None:
    """Train METHOD every CRON (five fields, e.g. "0 3 * * 1") once enough new feedback came in."""
    settings = load_settings()
    try:
        spec = ScheduleSpec(
            name=name,
            cron=cron,
            timezone=settings.train.timezone,
            method=method,
            target=target,
            min_new_feedback=min_feedback,
            added_by=getpass.getuser(),
        )
    except ValidationError as exc:
        raise click.BadParameter("; ".join(e["msg"] for e in exc.errors())) from exc
    info, replaced = _with_training(settings, lambda _, scheduler: scheduler.add(spec, actor=getpass.getuser()))
    when = f"{info.next_run:%Y-%m-%d %H:%M %Z}" if info.next_run else "not scheduled"
    click.echo(f"schedule {name} {'replaced' if replaced else 'added'}: {method} for the {target}, next {when}")


@schedule_group.command("list")
@_JSON
def schedule_list_command(as_json: bool) -> None:
    """The stored schedules and when each runs next."""
    infos = _with_training(load_settings(), lambda _, scheduler: scheduler.list())
    if as_json:
        print_json([schedule_json(i) for i in infos])
        return
    if not infos:
        click.echo('no schedules: `opsflow schedule add nightly "0 3 * * *"` adds one')
    for info in infos:
        s = info.spec
        when = f"{info.next_run:%Y-%m-%d %H:%M %Z}" if info.next_run else "-"
        threshold = "default" if s.min_new_feedback is None else s.min_new_feedback
        click.echo(f"{s.name:20} {s.cron:15} {s.method} {s.target}  min feedback {threshold}  next {when}")


@schedule_group.command("remove")
@click.argument("name")
def schedule_remove_command(name: str) -> None:
    """Delete the schedule NAME."""
    if not _with_training(load_settings(), lambda _, scheduler: scheduler.remove(name, actor=getpass.getuser())):
        raise click.ClickException(f"there is no schedule named {name!r}")
    click.echo(f"schedule {name} removed")


@schedule_group.command("run")
@click.argument("name")
@click.option("--force", is_flag=True, help="Train even without enough new feedback.")
def schedule_run_command(name: str, force: bool) -> None:
    """Run the schedule NAME now, in this process."""
    result = _with_training(load_settings(), lambda _, scheduler: scheduler.run(name, force=force))
    click.echo(f"schedule {name}: {result.reason}")
    if isinstance(result.result, TrainingOutcome):
        click.echo(f"{version_name(result.result.version)}: {result.result.version.status}")
