"""Retrieval quality on ../shared/bench: hit@1, hit@5, MRR for BM25, dense, runbook names alone and hybrid.

Ingests the benchmark corpus into a scratch data directory (or reuses one given with --data-dir),
then ranks documents for every dev case. Also prints the best-hit scores of answerable versus
unanswerable cases, which the planner's abstention threshold is calibrated from.

    .venv/bin/python -m bench.retrieval_quality [--data-dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

import numpy as np

from bench._common import SHARED_BENCH
from bot.app import open_knowledge
from bot.evaluation import EVAL_DEPTH, load_cases, retrieval_metrics
from bot.ingest import ingest
from core.settings import Settings


def doc_order(chunk_ids: list[str]) -> list[str]:
    return list(dict.fromkeys(cid.split("#", 1)[0] for cid in chunk_ids))


def spread(values: list[float]) -> dict[str, float]:
    q = np.percentile(values, [0, 10, 50, 90, 100])
    return dict(zip(["min", "p10", "p50", "p90", "max"], (round(float(v), 3) for v in q), strict=True))


async def run(data_dir: Path) -> dict[str, object]:
    settings = Settings(data_dir=data_dir, _env_file=None)
    cases = load_cases(SHARED_BENCH / "cases.dev.jsonl")
    async with open_knowledge(settings) as kb:
        report = await ingest([SHARED_BENCH / "corpus"], kb.builder, max_bytes=settings.ingest.max_document_bytes)
        rankings: dict[str, list[list[str]]] = {"bm25": [], "dense": [], "names": [], "hybrid": []}
        best: dict[str, dict[str, list[float]]] = {"answerable": {}, "unanswerable": {}}
        for case in cases:
            lexical = await kb.index.lexical(case.query, 50)
            vector = (await kb.embedder.embed([case.query]))[0]
            dense = await kb.index.dense(vector, 50)
            names = await kb.index.runbooks(case.query, 50)
            hybrid = await kb.retriever.retrieve(case.query, k=EVAL_DEPTH)
            rankings["bm25"].append(doc_order([c for c, _ in lexical]))
            rankings["dense"].append(doc_order([c for c, _ in dense]))
            rankings["names"].append([d for d, _ in names])
            rankings["hybrid"].append(hybrid.doc_ids())
            group = best["unanswerable" if case.unanswerable else "answerable"]
            group.setdefault("dense_cosine", []).append(dense[0][1] if dense else 0.0)
            group.setdefault("bm25", []).append(lexical[0][1] if lexical else 0.0)
            group.setdefault("named_incident", []).append(float(any(h.via == "named" for h in hybrid.nodes)))
        counts = await kb.index.counts()
    return {
        "corpus": {**counts, "failed": report.failed},
        "cases": len(cases),
        **{name: retrieval_metrics(cases, ranks) for name, ranks in rankings.items()},
        "best_hit": {
            group: {k: spread(v) if k != "named_incident" else round(float(np.mean(v)), 3) for k, v in scores.items()}
            for group, scores in best.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="reuse (and update) this data directory")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        result = asyncio.run(run(args.data_dir or Path(scratch)))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"corpus: {result['corpus']['documents']} documents, {result['corpus']['chunks']} chunks; "
        f"{result['cases']} cases"
    )
    print(f"{'ranking':8} {'hit@1':>7} {'hit@5':>7} {'MRR':>7}")
    for name in ("bm25", "dense", "names", "hybrid"):
        m = result[name]
        print(f"{name:8} {m['hit_at_1']:7.3f} {m['hit_at_5']:7.3f} {m['mrr']:7.3f}")
    print("best hit per case (answerable vs unanswerable):")
    for group, scores in result["best_hit"].items():
        print(f"  {group}: {json.dumps(scores)}")


if __name__ == "__main__":
    main()
