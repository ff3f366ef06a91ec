"""Seconds per step of DPO and GRPO (LoRA) on the packaged gemma3-270m, with peak memory.

Each job runs through ``trainer.jobs.run_job`` (the real subprocess). Rows come from the dev cases: the
serving Planner prompt over the case's runbook (split into sources as retrieval would show them), the
gold steps as the chosen workflow and their first half as the rejected one; GRPO rows carry the gold
steps for the reward. The first run also dequantises the GGUF once into the job cache (not timed per step).

    .venv/bin/python -m bench.training [--steps 5] [--grpo-steps 3] [--max-length 1024] [--sources 8] [--device auto]

Serving prompts run to 1,200-3,400 tokens (8 sources of up to 160 words) plus ~450 for the reply; on
2 CPU cores a step at that length takes minutes, so ``--sources 2 --max-length 512`` is the quick look.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import SHARED_BENCH
from core.settings import Settings
from core.types import Chunk, Passage, Retrieval
from generation.llamacpp import assemble_packaged_model
from generation.prompts import planner_messages, select_context
from trainer.jobs import JobConfig, JobProgress, run_job

SOURCE_WORDS = 160  # a runbook cut into sources of this many words, as its chunks are about


def _retrieval(case: dict[str, Any], sources: int) -> Retrieval:
    doc_id = case["doc_ids"][0]
    words = (SHARED_BENCH / "corpus" / doc_id).read_text(encoding="utf-8").split()
    texts = [" ".join(words[i : i + SOURCE_WORDS]) for i in range(0, len(words), SOURCE_WORDS)] or [""]
    passages = tuple(
        Passage(chunk=Chunk(chunk_id=f"{doc_id}#{n}", doc_id=doc_id, ordinal=n, title=doc_id, text=t), score=1.0)
        for n, t in enumerate(texts[:sources])
    )
    return Retrieval(query=case["query"], passages=passages)


def _reply(steps: list[dict[str, str]]) -> str:
    last = len(steps)
    return json.dumps(
        {
            "title": steps[0]["text"][:100],
            "steps": [
                {
                    "id": f"s{n}",
                    "type": "terminal" if n == last else "process",
                    "text": s["text"][:200],
                    "next": None if n == last else f"s{n + 1}",
                    "yes": None,
                    "no": None,
                    "sources": [1],
                }
                for n, s in enumerate(steps, 1)
            ],
        }
    )


def rows(limit: int, sources: int) -> dict[str, list[dict[str, Any]]]:
    """DPO and GRPO rows from the first ``limit`` answerable dev cases with at least two gold steps."""
    lines = (SHARED_BENCH / "cases.dev.jsonl").read_text(encoding="utf-8").splitlines()
    cases = [c for c in map(json.loads, lines) if not c["unanswerable"] and len(c["gold_steps"]) >= 2][:limit]
    out: dict[str, list[dict[str, Any]]] = {"dpo": [], "grpo": []}
    for case in cases:
        retrieval, gold = _retrieval(case, sources), case["gold_steps"]
        prompt = planner_messages(retrieval)
        chosen, rejected = _reply(gold), _reply(gold[: max(1, len(gold) // 2)])
        out["dpo"].append(
            {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
            }
        )
        out["grpo"].append(
            {"prompt": prompt, "gold_steps": gold, "n_sources": len(select_context(retrieval, 1.0).passages)}
        )
    return out


async def _show(report: JobProgress) -> None:
    if report.stage == "train":
        print(
            f"  step {report.step}: loss {report.loss:.4f} reward {report.reward} at {report.seconds:.1f} s", flush=True
        )


async def bench(args: argparse.Namespace, work: Path) -> dict[str, dict[str, Any]]:
    base = assemble_packaged_model(Settings().data_dir / "models")
    data = rows(16, args.sources)
    jobs = {
        "dpo": {"max_steps": args.steps, "batch_size": 2, "max_length": args.max_length},
        "grpo": {
            "max_steps": args.grpo_steps,
            "batch_size": 4,
            "num_generations": 4,
            "max_completion_length": args.completion_length,
        },
    }
    results = {}
    for method, fields in jobs.items():
        (work / method).mkdir()
        (work / method / "train.jsonl").write_text("\n".join(json.dumps(r) for r in data[method]) + "\n")
        config = JobConfig(
            method=method,  # type: ignore[arg-type]
            base_model=base,
            dataset_dir=work / method,
            output_dir=work / f"{method}-out",
            device=args.device,
            **fields,
        )

        started = time.monotonic()
        result = await run_job(config, on_progress=_show)
        results[method] = result.metrics | {
            "wall_seconds": round(time.monotonic() - started, 1),
            "gguf_adapter": str(result.gguf_adapter) if result.gguf_adapter else result.gguf_error,
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="DPO steps (batch 2)")
    parser.add_argument("--grpo-steps", type=int, default=3, help="GRPO steps (one prompt, 4 completions each)")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--completion-length", type=int, default=128, help="GRPO tokens per completion")
    parser.add_argument("--sources", type=int, default=8, help="Runbook chunks in each prompt (serving shows 8)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-training-") as work:
        results = asyncio.run(bench(args, Path(work)))
    for method, m in results.items():
        print(
            f"{method:5} {m['device']}: {m['seconds_per_step']} s/step (first step {m['first_step_seconds']} s), "
            f"{m['steps']} steps, load {m['load_seconds']} s, peak RSS {m['peak_rss_mb']} MB, "
            f"trainable {m['trainable_params']:,}, wall {m['wall_seconds']} s; gguf: {m['gguf_adapter']}"
        )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
