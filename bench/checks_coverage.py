"""How many dev-split workflows carry a runnable check, where their runbook gives one.

Ingests ../shared/bench/corpus into a scratch data directory (or reuses one given with --data-dir),
answers every case of cases.dev.jsonl as ``opsflow ask`` does (the configured planner; extractive
by default), attaches actions as ``opsflow checks`` does (``generation.actions.attach_actions``, the
question's entities as known values) with a catalogue of a Prometheus and the default read and
write command allowlists, and prints:

- eligible: answered cases whose cited chunks hold a PromQL query or an allowlisted command;
- runnable: of those, the share whose workflow has a read action with no missing value (target ≥ 0.60);
- with placeholders: of those, how many workflows carry an action still missing a value;
- concrete: the eligible workflows whose cited chunks hold a read check that can run with what the
  question names (no placeholder left), and the share of those that carry a runnable read action
  (the rest of the eligible ones need values only an alert's labels give);
- failed: cases the planner could not answer (an invalid workflow), which ``opsflow ask`` fails on too.

Ingesting the corpus takes minutes; ``--data-dir DIR`` keeps it (a second run re-ingests nothing).

    .venv/bin/python -m bench.checks_coverage [--data-dir DIR] [--json] [--list]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from bench._common import SHARED_BENCH
from bot.app import open_knowledge
from bot.evaluation import load_cases
from bot.ingest import ingest
from connectors.tools import HTTP_PROBE, catalogue
from core.errors import PlanError
from core.settings import Settings, ToolSettings
from generation.actions import attach_actions, checks_in, entities_of, fill

# Never called: the benchmark only looks at which calls the workflows propose.
PROMETHEUS = "http://prometheus.invalid:9090"


async def run(data_dir: Path) -> dict[str, Any]:
    settings = Settings(data_dir=data_dir, tools=ToolSettings(prometheus_url=PROMETHEUS), _env_file=None)
    tools = {name: spec for name, spec in catalogue(settings.tools).items() if name != HTTP_PROBE}
    cases = load_cases(SHARED_BENCH / "cases.dev.jsonl")
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    async with open_knowledge(settings) as kb:
        await ingest([SHARED_BENCH / "corpus"], kb.builder, max_bytes=settings.ingest.max_document_bytes)
        for case in cases:
            try:
                answer, retrieval = await kb.service.answer(case.query)
            except PlanError as exc:  # the planner's bug, not the checks': counted and shown
                failed.append(f"{case.id}: {exc}")
                continue
            if answer.workflow is None:
                continue
            chunks = {p.chunk.chunk_id: p.chunk for p in retrieval.passages}
            cited = dict.fromkeys(c.chunk_id for s in answer.workflow.steps for c in s.citations)
            offered = [a for cid in cited if cid in chunks for a in checks_in(chunks[cid].text, tools)]
            if not offered:
                continue
            known = entities_of(case.query)
            workflow = attach_actions(answer.workflow, chunks, tools, known)
            actions = [s.action for s in workflow.steps if s.action is not None]
            rows.append(
                {
                    "case": case.id,
                    "title": workflow.title,
                    "runnable": any(a.mode == "read" and not a.missing for a in actions),
                    "concrete": any(a.mode == "read" and not fill(a, known).missing for a in offered),
                    "placeholders": any(a.missing for a in actions),
                    "actions": [a.model_dump(exclude_defaults=True) for a in actions],
                    "offered": [a.model_dump(exclude_defaults=True) for a in offered[:5]],
                }
            )
    eligible = len(rows)
    runnable = sum(r["runnable"] for r in rows)
    concrete = [r for r in rows if r["concrete"]]
    return {
        "cases": len(cases),
        "eligible": eligible,
        "runnable": runnable,
        "runnable_share": round(runnable / eligible, 3) if eligible else None,
        "concrete": len(concrete),
        "concrete_runnable": sum(r["runnable"] for r in concrete),
        "concrete_share": round(sum(r["runnable"] for r in concrete) / len(concrete), 3) if concrete else None,
        "with_placeholders": sum(r["placeholders"] for r in rows),
        "failed": failed,
        "workflows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="a data directory to ingest into and reuse")
    parser.add_argument("--json", action="store_true", help="print the whole result as JSON")
    parser.add_argument("--list", action="store_true", help="list the eligible workflows without a runnable check")
    args = parser.parse_args()
    if args.data_dir:
        result = asyncio.run(run(args.data_dir))
    else:
        with tempfile.TemporaryDirectory(prefix="opsflow-checks-") as scratch:
            result = asyncio.run(run(Path(scratch)))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    if args.list:
        for row in result["workflows"]:
            if not row["runnable"]:
                print(f"{row['case']} {row['title']}: actions {row['actions']}; offered {row['offered']}")
    print(
        f"dev cases {result['cases']}; workflows whose cited sections hold a check: {result['eligible']}; "
        f"with a runnable read action: {result['runnable']} ({result['runnable_share']}); "
        f"with an unfilled placeholder: {result['with_placeholders']}; "
        f"whose cited sections hold a read check runnable with what the question names: {result['concrete']}, "
        f"of which with a runnable read action: {result['concrete_runnable']} ({result['concrete_share']})"
    )
    for failure in result["failed"]:
        print(f"failed: {failure}")


if __name__ == "__main__":
    main()
