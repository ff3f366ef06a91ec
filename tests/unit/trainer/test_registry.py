"""The model registry and the gate, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from core.errors import TrainingError
from trainer.gate import decide, run_gate
from trainer.registry import ModelRegistry, version_name
from trainer.store import ModelVersion, RecordStore

pytestmark = pytest.mark.parametrize("records_url", ["sqlite", "postgresql"], indirect=True)


async def candidate(registry: ModelRegistry, target: str = "planner") -> ModelVersion:
    return await registry.add_candidate(
        target=target,  # type: ignore[arg-type]
        method="dpo",
        base="gemma-3-270m-q4_k_m.gguf",
        adapter="/adapters/a.gguf",
        data_hash="abc123",
        metrics={"train": {"steps": 3}},
        trigger="alice",
    )


async def statuses(registry: ModelRegistry) -> dict[int, str]:
    return {v.id: v.status for v in await registry.list()}


async def test_promoting_retires_the_previous_version_of_the_same_target(records: RecordStore) -> None:
    registry = ModelRegistry(records)
    v1, v2, s1 = await candidate(registry), await candidate(registry), await candidate(registry, "scorer")
    await registry.promote(v1.id, actor="alice")
    await registry.promote(s1.id, actor="alice")
    await registry.promote(v2.id, actor="bob")
    assert await statuses(registry) == {v1.id: "retired", v2.id: "promoted", s1.id: "promoted"}
    served = await registry.promoted("planner")
    assert served is not None and served.id == v2.id and served.promoted_at is not None
    assert version_name(served) == f"planner-v{v2.id}"
    events = await records.audit_log(action="models.promote")
    assert (events[0].actor, events[0].detail["version"], events[0].detail["retired"]) == ("bob", v2.id, [v1.id])


async def test_rollback_walks_back_through_the_promotions(records: RecordStore) -> None:
    registry = ModelRegistry(records)
    v1, v2, v3 = [await candidate(registry) for _ in range(3)]
    for v in (v1, v2, v3):
        await registry.promote(v.id, actor="alice")
    rolled, now = await registry.rollback("planner", actor="carol")
    assert (rolled.id, now and now.id) == (v3.id, v2.id)
    rolled, now = await registry.rollback("planner", actor="carol")
    assert (rolled.id, now and now.id) == (v2.id, v1.id)
    rolled, now = await registry.rollback("planner", actor="carol")
    assert (rolled.id, now) == (v1.id, None)  # the base model serves again
    assert await registry.promoted("planner") is None
    with pytest.raises(TrainingError, match="nothing to roll back"):
        await registry.rollback("planner", actor="carol")
    details = [e.detail for e in await records.audit_log(action="models.rollback")]
    assert [(d["rolled_back"], d["now"]) for d in details] == [([v1.id], None), ([v2.id], v1.id), ([v3.id], v2.id)]


async def test_concurrent_promotions_leave_exactly_one_promoted_version(records: RecordStore) -> None:
    registry = ModelRegistry(records)
    versions = [await candidate(registry) for _ in range(6)]
    results = await asyncio.gather(*(registry.promote(v.id, actor="x") for v in versions), return_exceptions=True)
    assert all(isinstance(r, ModelVersion) for r in results), results
    assert list((await statuses(registry)).values()).count("promoted") == 1
    assert len(await records.audit_log(action="models.promote")) == 6


async def test_a_served_version_cannot_be_rejected(records: RecordStore) -> None:
    registry = ModelRegistry(records)
    v = await candidate(registry)
    await registry.promote(v.id, actor="alice")
    with pytest.raises(TrainingError, match="roll it back"):
        await registry.reject(v.id, actor="gate", reason="worse")
    with pytest.raises(TrainingError, match="no model version 999"):
        await registry.promote(999, actor="alice")


def scores(f1: float, valid: float) -> dict[str, float]:
    return {"overall_f1": f1, "schema_valid_rate": valid}


@pytest.mark.parametrize(
    ("after", "before", "promote"),
    [
        (scores(0.50, 0.9), scores(0.40, 0.9), True),
        (scores(0.39, 0.9), scores(0.40, 0.9), True),  # within the margin
        (scores(0.37, 0.9), scores(0.40, 0.9), False),
        (scores(0.60, 0.8), scores(0.40, 0.9), False),  # better F1, but less often valid
        (scores(0.40, 1.0), scores(0.40, 0.9), True),
    ],
)
def test_the_gate_refuses_a_regression(
    after: Mapping[str, float], before: Mapping[str, float], promote: bool, records_url: str
) -> None:
    decision = decide(after, before, margin=0.02)
    assert decision.promote is promote
    assert decision.reasons and (promote or all("fell" in r for r in decision.reasons))


def test_a_scorer_is_gated_on_its_pairwise_accuracy_not_on_the_planners_f1(records_url: str) -> None:
    worse = decide({"pairwise_accuracy": 0.46}, {"pairwise_accuracy": 0.68}, margin=0.02, target="scorer")
    assert not worse.promote and worse.reasons == (
        "pairwise_accuracy fell from 0.6800 to 0.4600, more than the margin 0.0200",
    )
    assert decide({"pairwise_accuracy": 0.67}, {"pairwise_accuracy": 0.68}, margin=0.02, target="scorer").promote
    with pytest.raises(TrainingError, match="pairwise_accuracy"):
        decide(scores(0.5, 1.0), scores(0.4, 1.0), margin=0.02, target="scorer")


def test_the_gate_needs_both_metrics(records_url: str) -> None:
    with pytest.raises(TrainingError, match="schema_valid_rate"):
        decide({"overall_f1": 0.5}, scores(0.4, 1.0), margin=0.0)


class Evaluation:
    """Stands in for ``opsflow eval``: fixed metrics per version (None = the base model)."""

    def __init__(self, by_adapter: dict[str | None, dict[str, float]]) -> None:
        self.by_adapter = by_adapter
        self.asked: list[str | None] = []

    async def __call__(self, version: ModelVersion | None) -> Mapping[str, Any]:
        adapter = version.adapter if version is not None else None
        self.asked.append(adapter)
        return self.by_adapter[adapter]


async def test_run_gate_promotes_an_improving_candidate_and_stores_both_metrics(records: RecordStore) -> None:
    registry = ModelRegistry(records)
    v = await candidate(registry)
    evaluation = Evaluation({None: scores(0.40, 0.9), "/adapters/a.gguf": scores(0.45, 0.95)})
    decision = await run_gate(registry, v, evaluation, margin=0.02, actor="schedule:nightly")
    assert decision.promote and evaluation.asked == [None, "/adapters/a.gguf"]
    stored = await registry.get(v.id)
    assert stored is not None and stored.status == "promoted"
    assert stored.metrics["gate"]["before"] == scores(0.40, 0.9)
    assert stored.metrics["gate"]["after"] == scores(0.45, 0.95)
    assert stored.metrics["gate"]["against"] == "base" and stored.metrics["train"] == {"steps": 3}


async def test_run_gate_rejects_a_regressing_candidate_and_keeps_the_served_one(records: RecordStore) -> None:
    registry = ModelRegistry(records)
    served = await candidate(registry)
    await registry.promote(served.id, actor="alice")
    worse = await registry.add_candidate(
        target="planner", method="kto", base="b", adapter="/adapters/worse.gguf", data_hash="d", metrics={}, trigger="t"
    )
    evaluation = Evaluation({"/adapters/a.gguf": scores(0.50, 1.0), "/adapters/worse.gguf": scores(0.30, 1.0)})
    decision = await run_gate(registry, worse, evaluation, margin=0.02, actor="bob")
    assert not decision.promote and "overall_f1 fell from 0.5000 to 0.3000" in decision.reasons[0]
    assert await statuses(registry) == {served.id: "promoted", worse.id: "rejected"}
    stored = await registry.get(worse.id)
    assert stored is not None and stored.metrics["gate"]["against"] == f"planner-v{served.id}"
    assert (await records.audit_log(action="models.reject"))[0].actor == "bob"
    with pytest.raises(TrainingError, match="not a candidate"):
        await run_gate(registry, stored, evaluation, margin=0.02, actor="bob")
