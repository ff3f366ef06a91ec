"""The extractive and the LLM planner side by side on the first N dev cases.

Uses the knowledge base in OPSFLOW_DATA_DIR (ingest ../shared/bench/corpus first) and the
configured LLM backend (default: llama.cpp with the packaged gemma3-270m base model). Prints
STEPScore, how often the model's workflow was valid (else the extractive fallback answered), and
latency.

    .venv/bin/python -m bench.planners [--cases 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from bench._common import SHARED_BENCH
from bot.app import open_knowledge
from bot.evaluation import evaluate, load_cases
from core.settings import Settings


async def run(n: int) -> dict[str, dict[str, Any]]:
    settings = Settings()
    cases = load_cases(SHARED_BENCH / "cases.dev.jsonl")[:n]
    out = {}
    async with open_knowledge(settings) as kb:
        for planner in ("extractive", "llm"):
            summary, _ = await evaluate(kb.service, kb.embedder, cases, planner=planner)  # type: ignore[arg-type]
            out[planner] = summary
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20)
    args = parser.parse_args()
    results = asyncio.run(run(args.cases))
    for planner, s in results.items():
        score, lat = s["stepscore"], s["latency_ms"]
        print(
            f"{planner:10} model {s['model']}: overall_f1 {score['overall_f1']:.3f} f1 {score['f1']:.3f} "
            f"ordered {score['ordered_f1']:.3f}; fallbacks {s['fallbacks']}; latency p50 {lat['p50']:.0f} ms "
            f"p95 {lat['p95']:.0f} ms"
        )
    print(json.dumps({p: s["stepscore"] for p, s in results.items()}, indent=2))


if __name__ == "__main__":
    main()
