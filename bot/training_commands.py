"""``/opsflow train | models | schedule`` in Slack, for admins: arguments in, the reply's text out.

The same use cases as the ``opsflow train``, ``models`` and ``schedule`` commands (``bot.training``).
"""

from __future__ import annotations

import shlex
from collections.abc import Awaitable, Callable
from typing import get_args

from pydantic import ValidationError

from bot.training import Training, TrainingOutcome
from core.settings import Settings
from trainer.jobs import Method, Target
from trainer.registry import version_name
from trainer.schedules import ScheduleSpec, TrainingScheduler

AdminCommand = Callable[[str, str], Awaitable[str]]
USAGE = {
    "train": "`/opsflow train export` · `/opsflow train run sft|dpo|grpo|kto [planner|scorer]`",
    "models": "`/opsflow models [list]` · `/opsflow models promote ID` · `/opsflow models rollback [planner|scorer]`",
    "schedule": '`/opsflow schedule [list]` · `/opsflow schedule add NAME "CRON" [METHOD] [TARGET]` · '
    "`/opsflow schedule remove NAME` · `/opsflow schedule run NAME`",
}


def _target(rest: list[str]) -> Target | None:
    """The target named by the only remaining argument (default: the planner); None when it names none."""
    if not rest:
        return "planner"
    return rest[0] if len(rest) == 1 and rest[0] in get_args(Target) else None  # type: ignore[return-value]


def admin_commands(settings: Settings, training: Training, scheduler: TrainingScheduler) -> dict[str, AdminCommand]:
    """The learning loop's admin subcommands, for ``SlackBot(admin_commands=…)``."""

    async def train(args: str, user: str) -> str:
        match shlex.split(args):
            case ["export"]:
                report = await training.export()
                sizes = ", ".join(f"{n} {s['train']}+{s['eval']}" for n, s in report.manifest["sizes"].items())
                return f"Datasets `{report.manifest['snapshot']}` (train+eval rows): {sizes}."
            case ["run", method, *rest] if method in get_args(Method) and (target := _target(rest)):
                return _outcome_text(await training.train(method, target, trigger=f"slack:{user}"))  # type: ignore[arg-type]
        return "Usage: " + USAGE["train"]

    async def models(args: str, user: str) -> str:
        match shlex.split(args):
            case [] | ["list"]:
                listed = await training.registry.list()
                return "\n".join(f"• `{version_name(v)}` {v.method} {v.status}" for v in listed[:20]) or "No versions."
            case ["promote", number] if number.isdigit():
                version = await training.registry.promote(int(number), actor=user, reason="by hand, in Slack")
                return f"`{version_name(version)}` is now served."
            case ["rollback", *rest] if target := _target(rest):
                rolled, now = await training.registry.rollback(target, actor=user)
                return f"`{version_name(rolled)}` rolled back; now serving {version_name(now) if now else 'the base'}."
        return "Usage: " + USAGE["models"]

    async def schedule(args: str, user: str) -> str:
        match shlex.split(args):
            case [] | ["list"]:
                listed = [
                    f"• `{i.spec.name}` `{i.spec.cron}` {i.spec.method} {i.spec.target}" for i in await scheduler.list()
                ]
                return "\n".join(listed) or "No schedules."
            case ["add", name, cron, *rest] if len(rest) <= 2:
                options = dict(zip(("method", "target"), rest, strict=False))
                try:
                    spec = ScheduleSpec.model_validate(
                        {"name": name, "cron": cron, "timezone": settings.train.timezone, "added_by": user, **options}
                    )
                except ValidationError as exc:
                    return "Not saved: " + "; ".join(e["msg"] for e in exc.errors())
                info, _ = await scheduler.add(spec, actor=user)
                return f"Schedule `{name}` saved; next run {info.next_run:%Y-%m-%d %H:%M %Z}."
            case ["remove", name]:
                removed = await scheduler.remove(name, actor=user)
                return f"Schedule `{name}` removed." if removed else f"There is no schedule `{name}`."
            case ["run", name]:
                return f"Schedule `{name}`: {(await scheduler.run(name)).reason}."
        return "Usage: " + USAGE["schedule"]

    return {"train": train, "models": models, "schedule": schedule}


def _outcome_text(outcome: TrainingOutcome) -> str:
    version = outcome.version
    reasons = (version.metrics.get("gate") or {}).get("reasons") or [outcome.job.gguf_error or "not gated"]
    return f"Trained `{version_name(version)}` ({version.method}): *{version.status}*. {'; '.join(reasons)}"
