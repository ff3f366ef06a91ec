"""The promotion gate: a candidate replaces the served model only if it does not regress.

The rule is ``decide``: ``overall_f1`` may not drop by more than the margin, and the share of
schema-valid workflows may not drop at all. ``run_gate`` evaluates the candidate and the version
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

GATED = ("overall_f1", "schema_valid_rate")

Evaluate = Callable[[ModelVersion | None], Awaitable[Mapping[str, Any]]]
"""Metrics of a version (None: the base model) on the fixed evaluation set; must include ``GATED``."""


class GateDecision(BaseModel):
    """Whether to promote, why, and the metrics it was decided on."""

    model_config = ConfigDict(frozen=True)

    promote: bool
    reasons: tuple[str, ...]
    candidate: dict[str, Any]
    baseline: dict[str, Any]


def decide(candidate: Mapping[str, Any], baseline: Mapping[str, Any], *, margin: float) -> GateDecision:
    """Promote unless ``overall_f1`` drops by more than ``margin`` or the schema-valid rate drops."""
    missing = [name for name in GATED for m in (candidate, baseline) if m.get(name) is None]
    if missing:
        raise TrainingError(f"the gate needs {', '.join(sorted(set(missing)))} for both models")
    f1, base_f1 = float(candidate["overall_f1"]), float(baseline["overall_f1"])
    valid, base_valid = float(candidate["schema_valid_rate"]), float(baseline["schema_valid_rate"])
    refusals = []
    if f1 < base_f1 - margin:
        refusals.append(f"overall_f1 fell from {base_f1:.4f} to {f1:.4f}, more than the margin {margin:.4f}")
    if valid < base_valid:
        refusals.append(f"schema-valid rate fell from {base_valid:.4f} to {valid:.4f}")
    summary = f"overall_f1 {base_f1:.4f} → {f1:.4f}, schema-valid rate {base_valid:.4f} → {valid:.4f}"
    return GateDecision(
        promote=not refusals, reasons=tuple(refusals or [summary]), candidate=dict(candidate), baseline=dict(baseline)
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
    decision = decide(after, baseline, margin=margin)
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
