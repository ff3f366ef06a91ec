"""The learning loop's use cases: export the training data, train, gate, promote, and schedule it.

export (``trainer.datasets`` over the records and the knowledge base) → train in a subprocess
(``trainer.jobs.run_job``) → evaluate the candidate and the version served now on the fixed
evaluation set (``bot.evaluation``: a planner by the LLM planner's STEPScore, a Scorer by its pairwise
accuracy) → ``trainer.gate`` → the registry marks it
promoted or rejected → the served models pick a promotion up at once. The trainer never imports the
bot: the evaluation reaches the gate as a function.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.app import Knowledge, build_adapted_chat_model
from bot.evaluation import Case, ScorerPair, evaluate, load_cases, pairwise_accuracy, scorer_pairs
from bot.service import Service
from connectors.tools import catalogue
from core.errors import TrainingError
from core.settings import Settings
from generation.llamacpp import assemble_packaged_model
from generation.planner import LlmPlanner, reply_format_for
from generation.ports import ChatModel
from generation.prompts import ReplyFormat
from generation.scorer import Scorer
from trainer.dataset_files import (
    HELDOUT,
    dataset_name,
    knowledge_questions,
    knowledge_retrievals,
    load_judged,
    load_trajectories,
    write_datasets,
)
from trainer.datasets import BuildConfig, build
from trainer.gate import GateDecision, run_gate
from trainer.jobs import JobConfig, JobResult, Method, ProgressCallback, Target, run_job
from trainer.registry import ModelRegistry
from trainer.schedules import ScheduleSpec, TrainingScheduler
from trainer.store import ModelVersion
from trainer.trajectories import trajectory_preferences

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportReport:
    """Where the datasets went, their manifest (snapshot hash, sizes), and judged answers left out."""

    out: Path
    manifest: dict[str, Any]
    left_out: int


@dataclass(frozen=True)
class TrainingOutcome:
    """A finished training: the version it made (promoted or rejected), the gate's decision, the job."""

    version: ModelVersion
    decision: GateDecision | None
    job: JobResult


def gate_metrics(summary: dict[str, Any], predictions: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What the gate compares, from an ``opsflow eval`` run: ``overall_f1``, and ``schema_valid_rate`` (the
    share of planned answers that are the model's own valid workflow, not the extractive fallback)."""
    planned = sum(not p["abstain"] for p in predictions)
    valid = planned - summary["fallbacks"]
    return {
        "overall_f1": summary["stepscore"]["overall_f1"] or 0.0,
        "schema_valid_rate": round(valid / planned, 4) if planned else 1.0,
        "cases": summary["cases"],
        "fallbacks": summary["fallbacks"],
        "model": summary["model"],
    }


class Training:
    """The learning loop over an opened knowledge base."""

    def __init__(self, settings: Settings, kb: Knowledge) -> None:
        self._settings = settings
        self._cfg = settings.train
        self._kb = kb
        self.registry = ModelRegistry(kb.records)

    @property
    def reply_format(self) -> ReplyFormat:
        """The Planner's reply format on the configured backend: what training renders and serving reads."""
        return reply_format_for(self._settings.llm.backend)

    @property
    def adapters_dir(self) -> Path:
        return self._cfg.output_dir or self._settings.data_dir / "models" / "adapters"

    async def export(self, out: Path | None = None) -> ExportReport:
        """Build every dataset from the records and the knowledge base and write it (default: under
        ``<adapters>/datasets/<snapshot>``)."""
        answers, left_out = await load_judged(self._kb.records)
        questions = knowledge_questions(await self._kb.index.incident_candidates(), self._cfg.knowledge_questions)
        knowledge = await knowledge_retrievals(questions, self._kb.retriever.retrieve)
        cfg = BuildConfig(
            seed=self._cfg.seed,
            eval_fraction=self._cfg.eval_fraction,
            min_pairs=self._cfg.min_pairs,
            max_per_question=self._cfg.max_per_question,
            tools=tuple(catalogue(self._settings.tools).values()),
            reply_format=self.reply_format,
        )
        execution = trajectory_preferences(*await load_trajectories(self._kb.records))
        data = await asyncio.to_thread(build, answers, knowledge, execution, cfg)
        out = out or self.adapters_dir / "datasets" / data.snapshot
        extra = {
            "judged_answers": len(answers),
            "left_out": left_out,
            "knowledge_questions": len(knowledge),
            "execution_pairs": len(execution),
        }
        return ExportReport(out, await write_datasets(data, out, extra=extra), left_out)

    async def train(
        self,
        method: Method,
        target: Target,
        *,
        trigger: str,
        on_progress: ProgressCallback | None = None,
        **job_options: Any,
    ) -> TrainingOutcome:
        """Export, train ``method`` for ``target``, and gate the candidate; raises TrainingError on failure."""
        exported = await self.export()
        name = dataset_name(method, target)
        if not exported.manifest["sizes"][name]["train"]:
            raise TrainingError(f"no {name} training rows yet: collect feedback or ingest runbooks first")
        base = await self._base_model()
        if method == "grpo":
            job_options = await self._scorer_reward(base) | job_options
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        config = JobConfig(
            method=method,
            target=target,
            base_model=base,
            dataset_dir=exported.out / name,
            output_dir=self.adapters_dir / f"{target}-{method}-{stamp}-{exported.manifest['snapshot'][:8]}",
            seed=self._cfg.seed,
            **({"max_length": self._settings.llamacpp.n_ctx} | job_options),  # room for the whole serving prompt
        )
        result = await run_job(config, on_progress=on_progress)
        version = await self.registry.add_candidate(
            target=target,
            method=method,
            base=str(base),
            adapter=str(result.gguf_adapter or result.adapter_dir),
            data_hash=exported.manifest["snapshot"],
            metrics={"train": result.metrics, "data": exported.manifest["sizes"][name]},
            trigger=trigger,
        )
        if result.gguf_adapter is None:
            reason = f"no GGUF adapter to serve ({result.gguf_error})"
            return TrainingOutcome(await self.registry.reject(version.id, actor=trigger, reason=reason), None, result)
        cases = await self.eval_cases(exported.out)
        if target == "scorer":  # the pairs once, for both sides of the gate
            pairs = await scorer_pairs(self._kb.service, cases, seed=self._cfg.seed)
            evaluate_version = functools.partial(self.evaluate_scorer, pairs=pairs)
        else:
            evaluate_version = functools.partial(self.evaluate, cases=cases)
        decision = await run_gate(self.registry, version, evaluate_version, margin=self._cfg.gate_margin, actor=trigger)
        if decision.promote:
            await self._kb.served.refresh()
        return TrainingOutcome(await self.registry.get(version.id) or version, decision, result)

    async def eval_cases(self, exported: Path) -> list[Case]:
        """The gate's fixed evaluation set: the configured cases plus the held-back accepted answers."""

        def read() -> list[Case]:
            paths = [p for p in (self._cfg.eval_cases, exported / HELDOUT) if p is not None and p.is_file()]
            return [case for path in paths for case in load_cases(path)]

        cases = await asyncio.to_thread(read)
        if not cases:
            raise TrainingError("no evaluation cases: set OPSFLOW_TRAIN__EVAL_CASES or collect accepted answers")
        return cases

    async def evaluate(self, version: ModelVersion | None, *, cases: Sequence[Case]) -> dict[str, Any]:
        """A planner's gate metrics (``gate_metrics``): ``version`` (None: the base model) planning ``cases``
        with the LLM planner."""
        model = await self._chat(version)
        try:
            cfg = self._settings.planner.model_copy(update={"kind": "llm"})
            service = Service(self._kb.retriever, cfg, LlmPlanner(model, reply_format=self.reply_format), None)
            summary, predictions = await evaluate(service, self._kb.embedder, cases, planner="llm")
        finally:
            await self._release(model)
        return gate_metrics(summary, predictions)

    async def evaluate_scorer(self, version: ModelVersion | None, *, pairs: Sequence[ScorerPair]) -> dict[str, Any]:
        """A Scorer's gate metrics: the pairwise accuracy of ``version`` (None: the base model) on ``pairs``
        (``bot.evaluation.scorer_pairs``)."""
        model = await self._chat(version)
        try:
            return await pairwise_accuracy(Scorer(model), pairs) | {"model": model.name}
        finally:
            await self._release(model)

    async def _chat(self, version: ModelVersion | None) -> ChatModel:
        return self._kb.chat if version is None else await build_adapted_chat_model(self._settings, version)

    async def _release(self, model: ChatModel) -> None:
        if model is not self._kb.chat:
            await model.aclose()

    async def _scorer_reward(self, base: Path) -> dict[str, Any]:
        """GRPO's Scorer, part of its reward: the served one (the promoted adapter, else the base model)
        on llama.cpp; none where the base is not a GGUF file llama.cpp can load."""
        if base.suffix != ".gguf":
            return {}
        served = await self.registry.promoted("scorer")
        adapter = Path(served.adapter) if served is not None and served.adapter else None
        return {"scorer_model": base, "scorer_adapter": adapter}

    async def _base_model(self) -> Path:
        if self._cfg.base_model:
            return await asyncio.to_thread(Path(self._cfg.base_model).expanduser)
        return await asyncio.to_thread(assemble_packaged_model, self._settings.data_dir / "models")

    async def run_schedule(self, spec: ScheduleSpec) -> TrainingOutcome:
        """The scheduler's runner: train as the schedule says."""
        outcome = await self.train(spec.method, spec.target, trigger=f"schedule:{spec.name}")
        log.info("schedule %s trained %s: %s", spec.name, outcome.version.id, outcome.version.status)
        return outcome


@contextlib.asynccontextmanager
async def open_training(
    settings: Settings, kb: Knowledge, *, lead: bool
) -> AsyncIterator[tuple[Training, TrainingScheduler]]:
    """The learning loop and its schedules; with ``lead`` (``opsflow serve``), this process competes to
    run the schedules."""
    training = Training(settings, kb)
    scheduler = TrainingScheduler(
        kb.records,
        training.run_schedule,
        min_new_feedback=settings.train.min_new_feedback,
        lease_s=settings.train.lease_s,
    )
    await scheduler.start(lead=lead)
    try:
        yield training, scheduler
    finally:
        await scheduler.aclose()
