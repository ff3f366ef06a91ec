"""The LLM planner alone, beside the extractive planner, on the answerable dev cases.

Uses the knowledge base in OPSFLOW_DATA_DIR (ingest ../shared/bench/corpus first) and the
configured LLM backend (default: llama.cpp with the packaged gemma3-270m, numbered-line replies under
a grammar). No fallback: an invalid reply scores as an empty workflow. Prints, for the LLM planner,
the valid rate, the share of valid-but-wrong replies (valid, F1 < 0.2), LLM-only overall F1, the
structure lint, repairs and answer latency; for the extractive planner, its F1 on the same
retrievals; and what the product answers (the model's workflow, else the extractive fallback).

    .venv/bin/python -m bench.planners [--cases 20] [--format lines|json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench._common import SHARED_BENCH
from bot.app import open_knowledge
from bot.evaluation import EVAL_DEPTH, WRONG_BELOW, Case, load_cases, percentiles
from core.errors import ModelUnavailable, PlanError
from core.settings import Settings
from core.types import Workflow
from generation import stepscore
from generation.extractive import plan_extractive
from generation.lint import lint
from generation.planner import LlmPlanner, reply_format_for
from generation.prompts import ReplyFormat
from retrieval.ports import Embedder
from retrieval.retriever import Retriever


def answerable(cases: Sequence[Case]) -> list[Case]:
    return [c for c in cases if not c.unanswerable and any(str(g.get("text", "")).strip() for g in c.gold_steps)]


async def step_f1(embedder: Embedder | None, workflow: Workflow | None, case: Case) -> float:
    """STEPScore F1 of one workflow (None: empty) against the case's gold, as ``opsflow eval`` scores."""
    pred = [] if workflow is None else [{"type": s.type, "text": s.text} for s in workflow.steps if s.text.strip()]
    gold = [g for g in case.gold_steps if str(g.get("text", "")).strip()]
    if not pred:
        return 0.0
    if embedder is None:
        matrix = stepscore.lexical_similarity([p["text"] for p in pred], [g["text"] for g in gold])
        threshold = stepscore.THRESHOLD["lexical"]
    else:
        vectors = await embedder.embed([p["text"] for p in pred] + [g["text"] for g in gold])
        matrix = np.asarray(vectors[: len(pred)] @ vectors[len(pred) :].T, dtype=np.float64)
        threshold = stepscore.THRESHOLD["minilm"]
    result = stepscore.score_case(pred, gold, lambda _p, _g: matrix, threshold, abstained=False, unanswerable=False)
    return float(result["f1"])


async def llm_only(
    retriever: Retriever, embedder: Embedder | None, planner: LlmPlanner, cases: Sequence[Case]
) -> dict[str, Any]:
    """The LLM planner's workflows for ``cases`` (answerable ones), scored without fallback, beside the
    extractive planner's on the same retrievals. Latency is the planner's call, in seconds."""
    before = planner.stats.copy()
    rows = []
    for case in answerable(cases):
        retrieval = await retriever.retrieve(case.query, k=EVAL_DEPTH)
        started = time.perf_counter()
        try:
            workflow: Workflow | None = await planner.plan(retrieval)
        except PlanError:
            workflow = None
        seconds = time.perf_counter() - started
        extractive = plan_extractive(retrieval)
        f1, extractive_f1 = await step_f1(embedder, workflow, case), await step_f1(embedder, extractive, case)
        rows.append(
            {
                "id": case.id,
                "valid": workflow is not None,
                "f1": f1,
                "extractive_f1": extractive_f1,
                "with_fallback_f1": f1 if workflow is not None else extractive_f1,
                "lint": lint(workflow) if workflow is not None else None,
                "seconds": round(seconds, 2),
                "steps": [f"{s.type}: {s.text}" for s in workflow.steps] if workflow is not None else [],
            }
        )
    stats = planner.stats - before
    return summarise(rows) | {"repaired_replies": stats["repaired_replies"], "repairs": stats["repairs"], "rows": rows}


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Rates and means over the per-case rows of ``llm_only``."""
    n = len(rows)
    valid = [r for r in rows if r["valid"]]

    def mean(key: str, among: Sequence[dict[str, Any]] = rows) -> float:
        return round(sum(r[key] for r in among) / len(among), 4) if among else 0.0

    return {
        "cases": n,
        "valid_rate": round(len(valid) / n, 4) if n else 0.0,
        "valid_but_wrong": round(sum(r["f1"] < WRONG_BELOW for r in valid) / n, 4) if n else 0.0,
        "llm_only_f1": mean("f1"),
        "extractive_f1": mean("extractive_f1"),
        "with_fallback_f1": mean("with_fallback_f1"),
        "lint_clean_rate": round(sum(not r["lint"] for r in valid) / len(valid), 4) if valid else 0.0,
        "latency_s": percentiles([r["seconds"] for r in rows]),
    }


async def similarity_embedder(embedder: Embedder) -> Embedder | None:
    """The MiniLM embedder when it loads (the benchmark's similarity), else None (token F1)."""
    try:
        await embedder.embed(["warm up"])
    except ModelUnavailable:
        return None
    return embedder


async def run(n: int, reply_format: ReplyFormat | None) -> dict[str, Any]:
    settings = Settings()
    cases = answerable(load_cases(SHARED_BENCH / "cases.dev.jsonl"))[:n]
    async with open_knowledge(settings) as kb:
        chosen = reply_format or reply_format_for(settings.llm.backend)
        planner = LlmPlanner(kb.chat, reply_format=chosen)
        await planner.plan(await kb.retriever.retrieve(cases[0].query, k=EVAL_DEPTH))  # load the model
        result = await llm_only(kb.retriever, await similarity_embedder(kb.embedder), planner, cases)
        return result | {"model": planner.model.name, "reply_format": chosen}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--format", choices=["lines", "json"], default=None, help="Default: the backend's.")
    parser.add_argument("--rows", action="store_true", help="Print every case's workflow too.")
    args = parser.parse_args()
    r = asyncio.run(run(args.cases, args.format))
    print(
        f"llm ({r['model']}, {r['reply_format']}), {r['cases']} cases: valid {r['valid_rate']:.0%}, "
        f"valid-but-wrong {r['valid_but_wrong']:.0%}, LLM-only F1 {r['llm_only_f1']:.3f}, "
        f"lint-clean {r['lint_clean_rate']:.0%}, repaired replies {r['repaired_replies']} ({r['repairs']} repairs), "
        f"latency p50 {r['latency_s']['p50']:.1f} s p95 {r['latency_s']['p95']:.1f} s"
    )
    print(f"extractive F1 {r['extractive_f1']:.3f}; the product (llm, else extractive) F1 {r['with_fallback_f1']:.3f}")
    rows = r.pop("rows")
    if args.rows:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
