"""The promotion gate: a candidate replaces the served model only if it does not regress.

The rule is ``decide``, by target. A planner's ``overall_f1`` may not drop by more than the margin, and
its share of schema-valid workflows may not drop at all. A Scorer's ``pairwise_accuracy`` (the share of
held-aside pairs it rates the better side of higher) may not drop by more than the margin: the planner's
F1 cannot see a worse Scorer. ``run_gate`` evaluates the candidate and the version
served now (the base model when none is) with the evaluation the caller passes in, so the
trainer stays free of the bot's evaluation code, then stores both metrics on the candidate and
promotes or rejects it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from core.errors import TrainingError
from trainer.jobs import Target
from trainer.registry import ModelRegistry, version_name
from trainer.store import ModelVersion

GATED: dict[Target, dict[str, bool]] = {
    "planner": {"overall_f1": True, "schema_valid_rate": False},
    "scorer": {"pairwise_accuracy": True},
}
"""Per target, the metrics the gate compares, each mapped to whether it may fall by up to the margin
(False: it may not fall at all)."""

Evaluate = Callable[[ModelVersion | None], Awaitable[Mapping[str, Any]]]
"""Metrics of a version (None: the base model) on the fixed evaluation set; must include its target's ``GATED``."""


class GateDecision(BaseModel):
    """Whether to promote, why, and the metrics it was decided on."""

    model_config = ConfigDict(frozen=True)

    promote: bool
    reasons: tuple[str, ...]
    candidate: dict[str, Any]
    baseline: dict[str, Any]


def decide(
    candidate: Mapping[str, Any], baseline: Mapping[str, Any], *, margin: float, target: Target = "planner"
) -> GateDecision:
    """Promote unless a metric of ``GATED[target]`` falls by more than it may; raises TrainingError when
    either side lacks one."""
    gated = GATED[target]
    missing = [name for name in gated for m in (candidate, baseline) if m.get(name) is None]
    if missing:
        raise TrainingError(f"the gate needs {', '.join(sorted(set(missing)))} for both models")
    refusals, summary = [], []
    for name, with_margin in gated.items():
        after, before = float(candidate[name]), float(baseline[name])
        allowed = margin if with_margin else 0.0
        summary.append(f"{name} {before:.4f} → {after:.4f}")
        if after < before - allowed:
            beyond = f", more than the margin {margin:.4f}" if with_margin else ""
            refusals.append(f"{name} fell from {before:.4f} to {after:.4f}{beyond}")
    return GateDecision(
        promote=not refusals,
        reasons=tuple(refusals or [", ".join(summary)]),
        candidate=dict(candidate),
        baseline=dict(baseline),
    )


async def run_gate(
    registry: ModelRegistry, candidate: ModelVersion, evaluate: Evaluate, *, margin: float, actor: str
) -> GateDecision:
    """Evaluate ``candidate`` against what serves its target now; store both metrics; promote or reject."""
    if candidate.status != "candidate":
        raise TrainingError(f"{version_name(candidate)} is {candidate.status}, not a candidate")
    target: Target = candidate.target  # type: ignore[assignment]
    served = await registry.promoted(target)
    baseline = await evaluate(served)
    after = await evaluate(candidate)
    decision = decide(after, baseline, margin=margin, target=target)
    against = version_name(served) if served is not None else "base"
    await registry.update_metrics(
        candidate.id,
        {"gate": {"before": dict(baseline), "after": dict(after), "against": against, "margin": margin,
                  "promote": decision.promote, "reasons": list(decision.reasons)}},
    )  # fmt: skip
    reason = "; ".join(decision.reasons)
    if decision.promote:
        await registry.promote(candidate.id, actor=actor, reason=f"gate passed against {against}: {reason}")
    else:
        await registry.reject(candidate.id, actor=actor, reason=f"gate refused against {against}: {reason}")
    return decision
