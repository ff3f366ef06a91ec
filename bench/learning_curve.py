"""The learning curve of the packaged gemma3-270m: base → SFT → DPO (or KTO) → the Scorer's DPO → GRPO.

The dev cases are split by document into a training part and a held-aside part (fixed seed). The
training cases are replayed as engineers would answer them through the record store: the bot's
answer (the extractive planner) gets 👍 when its STEPScore F1 against the gold is at least
``CLOSE``, else 👎 and an Edit equal to the gold. Each stage is then a real ``opsflow train run``
(export → the job subprocess → the gate against the served version), started from the last
promoted adapter. After each stage the stage's adapter (promoted or not, so a refused stage shows on
the curve) plans the held-aside cases with numbered-line replies, LLM only (``bench.planners``). The
Scorer's stage reports what its gate measured, base and trained: pairwise accuracy on pairs from the
held-aside cases (``bot.evaluation.scorer_pairs``: the gold ≻ a corrupted copy, steps shuffled, a
decision dropped or another runbook's steps, and the gold ≻ a 👎-worthy answer). GRPO comes last, so
that its reward asks the Scorer its DPO left (FlowXpert's co-evolution), when the gate promoted it.
``--stages`` runs some parts only (the Scorer's alone takes about 20 minutes on 2 cores).

Needs the train extra and a knowledge base of ``../shared/bench/corpus`` in OPSFLOW_DATA_DIR (ingested
when empty). Everything it writes goes to ``--out`` (default ``<data_dir>/learning-curve``, replaced each
run): records, datasets, adapters, ``learning_curve.json`` and ``learning_curve.png``. Keep it out of
CI. The defaults (the configuration measured last) take about three hours on a 2-core CPU (an SFT
step ~80 s, a DPO step 2-4 min there); where torch sees a GPU the jobs use it, and every stage can
take more steps::

    nice -n 5 .venv/bin/python -m bench.learning_curve [--held 0.3] [--eval-cases 8] [--sft-steps 36]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._common import ROOT, SHARED_BENCH
from bench.planners import answerable, llm_only, similarity_embedder, step_f1
from bot.app import Knowledge, open_knowledge
from bot.evaluation import EVAL_DEPTH, Case, gold_workflow, load_cases
from bot.ingest import ingest
from core.errors import PlanError
from core.settings import Settings
from generation.llamacpp import LlamaCppChatModel
from generation.planner import LlmPlanner
from retrieval.ports import Embedder
from trainer.store import Interaction

CLOSE = 0.5  # an answer this close to the gold gets a 👍
REPLAY_USER = "bench-replay"


def split_by_document(cases: Sequence[Case], held: float, seed: int) -> tuple[list[Case], list[Case]]:
    """(training, held-aside) answerable cases; every case of a document falls on the same side."""
    docs = sorted({c.doc_ids[0] for c in cases if c.doc_ids})
    random.Random(seed).shuffle(docs)
    aside = set(docs[: max(1, round(held * len(docs)))])
    usable = [c for c in answerable(cases) if c.doc_ids]
    return [c for c in usable if c.doc_ids[0] not in aside], [c for c in usable if c.doc_ids[0] in aside]


async def replay(kb: Knowledge, embedder: Embedder | None, cases: Sequence[Case]) -> dict[str, int]:
    """Answer each training case, record it, and vote (and edit) as an engineer comparing it to the gold."""
    counts = {"up": 0, "down_edited": 0, "abstained": 0}
    for case in cases:
        try:
            answer, retrieval = await kb.service.answer(case.query, k=EVAL_DEPTH, planner="extractive")
        except PlanError:  # the extractive planner's own workflow failed validation: nothing to judge
            counts["abstained"] += 1
            continue
        if answer.abstained or answer.workflow is None:
            counts["abstained"] += 1
            continue
        interaction = await kb.records.add_interaction(
            Interaction(
                origin="cli",
                user=REPLAY_USER,
                query=case.query,
                answer=answer.model_dump(mode="json"),
                context={"query": case.query, "retrieval": retrieval.model_dump(mode="json")},
                model=answer.model,
                planner=answer.planner,
                abstained=False,
            )
        )
        if await step_f1(embedder, answer.workflow, case) >= CLOSE:
            await kb.records.record_feedback(interaction.id, REPLAY_USER, via="reaction", vote=1)
            counts["up"] += 1
        else:
            fixed = gold_workflow(case, answer.workflow)
            await kb.records.record_feedback(
                interaction.id, REPLAY_USER, via="edit", vote=-1, corrected=fixed.model_dump(mode="json")
            )
            counts["down_edited"] += 1
    return counts


def train_stage(env: dict[str, str], method: str, target: str, steps: int, args: argparse.Namespace,
                init_adapter: Path | None) -> dict[str, Any]:  # fmt: skip
    """One ``opsflow train run … --json`` in a subprocess (export, the job, the gate); its JSON and wall time."""
    batch = args.generations if method == "grpo" else args.batch_size  # one prompt's completions per step
    command = [sys.executable, "-m", "bot", "train", "run", method, "--target", target, "--steps", str(steps),
               "--batch-size", str(batch), "--max-length", str(args.max_length), "--json"]  # fmt: skip
    if method == "grpo":
        command += ["--max-completion-length", str(args.completion_length)]
    # Few steps: SFT, and the Scorer's DPO, which must move a model that rates every workflow alike, take a
    # higher rate than the job's default, which suits the planner's preference training.
    rate = args.sft_learning_rate if method == "sft" else args.scorer_learning_rate if target == "scorer" else None
    if rate is not None:
        command += ["--learning-rate", str(rate)]
    if init_adapter is not None:
        command += ["--init-adapter", str(init_adapter)]
    print(f"$ {' '.join(command[1:])}", flush=True)
    started = time.monotonic()
    done = subprocess.run(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False)
    wall = round(time.monotonic() - started, 1)
    if done.returncode != 0:
        return {"failed": f"exit code {done.returncode}", "wall_seconds": wall}
    return json.loads(done.stdout) | {"wall_seconds": wall}


def chat_model(settings: Settings, gguf: str | None) -> LlamaCppChatModel:
    return LlamaCppChatModel(settings.llamacpp.model_copy(update={"lora_path": gguf}), settings.data_dir)


async def measure(
    kb: Knowledge, settings: Settings, embedder: Embedder | None, held: Sequence[Case], gguf: str | None
) -> dict[str, Any]:
    """The planner's LLM-only metrics on ``held`` with the adapter ``gguf`` (None: the base model)."""
    model = chat_model(settings, gguf)
    try:
        result = await llm_only(kb.retriever, embedder, LlmPlanner(model, reply_format="lines"), held)
    finally:
        await model.aclose()
    result.pop("rows")
    return result


def plot(stages: Sequence[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s["stage"] for s in stages]
    x = list(range(len(names)))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for key, label in (("valid_rate", "valid rate"), ("llm_only_f1", "LLM-only F1"),
                       ("valid_but_wrong", "valid but wrong"), ("extractive_f1", "extractive F1")):  # fmt: skip
        ax.plot(x, [s.get(key) for s in stages], marker="o", label=label)
    scorer = [(i, s["scorer"]["pairwise_accuracy"]) for i, s in enumerate(stages) if s.get("scorer")]
    if scorer:
        ax.plot(*zip(*scorer, strict=True), marker="s", linestyle="--", label="Scorer pairwise accuracy")
    for i, s in enumerate(stages):
        if s.get("gate"):
            ax.annotate(s["gate"], (i, 1.02), ha="center", fontsize=8)
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.1)
    ax.set_title("gemma3-270m learning curve on held-aside dev cases")
    ax.legend(fontsize=8, loc="center left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _environment(settings: Settings, out: Path, cases_file: Path, args: argparse.Namespace) -> dict[str, str]:
    """What the ``opsflow train run`` subprocesses see: this run's records, adapters and gate cases."""
    return os.environ | {
        "OPSFLOW_DATA_DIR": str(settings.data_dir),
        "OPSFLOW_RECORDS__URL": f"sqlite:///{out / 'records.sqlite'}",
        "OPSFLOW_LLM__BACKEND": "llamacpp",
        "OPSFLOW_TRAIN__OUTPUT_DIR": str(out / "adapters"),
        "OPSFLOW_TRAIN__EVAL_CASES": str(cases_file),
        "OPSFLOW_TRAIN__EVAL_FRACTION": str(args.export_eval_fraction),
        "OPSFLOW_TRAIN__KNOWLEDGE_QUESTIONS": str(args.knowledge_questions),
        "OPSFLOW_TRAIN__SEED": str(args.seed),
    }


def _summary_line(stage: dict[str, Any]) -> str:
    s = stage
    scorer = s.get("scorer") or {}
    if "valid_rate" not in s:
        return (
            f"{s['stage']:10} {s.get('failed', '')} scorer accuracy {scorer.get('pairwise_accuracy', '-')} "
            f"(ties {scorer.get('ties', '-')}, {scorer.get('pairs', 0)} pairs, by kind {scorer.get('by_kind', {})})  "
            f"s/step {s.get('seconds_per_step', '-')}  wall {s.get('wall_seconds', '-')} s  "
            f"peak RSS {s.get('peak_rss_mb', '-')} MB  gate {s.get('gate', '-')}"
        )
    return (
        f"{s['stage']:10} valid {s['valid_rate']:.0%}  valid-but-wrong {s['valid_but_wrong']:.0%}  "
        f"LLM-only F1 {s['llm_only_f1']:.3f}  extractive F1 {s['extractive_f1']:.3f}  "
        f"lint-clean {s['lint_clean_rate']:.0%}  p50 {s['latency_s']['p50']:.1f} s  "
        f"scorer acc {scorer.get('pairwise_accuracy', '-')}  s/step {s.get('seconds_per_step', '-')}  "
        f"wall {s.get('wall_seconds', '-')} s  peak RSS {s.get('peak_rss_mb', '-')} MB  gate {s.get('gate', '-')}"
    )


def prepare(args: argparse.Namespace) -> tuple[Path, list[Case], list[Case]]:
    """A fresh work folder, and the (training, held-aside) cases."""
    out: Path = (args.out or Settings().data_dir / "learning-curve").resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    training, held = split_by_document(load_cases(SHARED_BENCH / "cases.dev.jsonl"), args.held, args.seed)
    return out, training, held


async def gate_cases(kb: Knowledge, held: Sequence[Case], n: int, path: Path) -> list[Case]:
    """The first ``n`` held-aside cases the product can answer (its extractive fallback's workflow is
    valid: a case where it is not would stop the gate), written to ``path`` as the gate's cases."""
    kept: list[Case] = []
    for case in held:
        try:
            await kb.service.answer(case.query, k=EVAL_DEPTH, planner="extractive")
        except PlanError:
            continue
        kept.append(case)
        if len(kept) == n:
            break
    await asyncio.to_thread(path.write_text, "".join(c.model_dump_json() + "\n" for c in kept), encoding="utf-8")
    return kept


async def run(args: argparse.Namespace, out: Path, training: list[Case], held: list[Case]) -> list[dict[str, Any]]:
    """Every stage in turn; the results so far are saved after each (``save``), so a run cut short keeps them.
    The planner's SFT and preference stages, the Scorer's (base, then after its DPO), then the planner's GRPO."""
    env = _environment(Settings(), out, out / "held_aside.jsonl", args)
    settings = Settings(records={"url": env["OPSFLOW_RECORDS__URL"]}, llm={"backend": "llamacpp"})
    print(f"{len(training)} training cases, {len(held)} held-aside cases; work in {out}", flush=True)
    stages: list[dict[str, Any]] = []
    async with open_knowledge(settings) as kb:
        if not await kb.builder.known():
            print("ingesting the benchmark corpus", flush=True)
            await ingest([SHARED_BENCH / "corpus"], kb.builder, max_bytes=5_000_000)
        embedder = await similarity_embedder(kb.embedder)
        held = await gate_cases(kb, held, args.eval_cases, out / "held_aside.jsonl")
        print(f"replay: {await replay(kb, embedder, training)}; {len(held)} held-aside cases measured", flush=True)
        init: Path | None = None
        if "planner" in args.stages:
            stages.append({"stage": "base"} | await measure(kb, settings, embedder, held, None))
            await save(stages, out)
            for method, steps in (("sft", args.sft_steps), (args.preference, args.pref_steps)):
                init = await planner_stage(kb, settings, embedder, held, env, method, steps, args, init, stages, out)
        if "scorer" in args.stages:
            await scorer_stage(env, args, stages, out)
        # GRPO last: its reward asks the Scorer that serves now, the one the gate just promoted (or the base).
        if "grpo" in args.stages:
            await planner_stage(kb, settings, embedder, held, env, "grpo", args.grpo_steps, args, init, stages, out)
    return stages


async def scorer_stage(env: dict[str, str], args: argparse.Namespace, stages: list[dict[str, Any]], out: Path) -> None:
    """Train the Scorer with DPO; its gate measures the pairwise accuracy of the base and the trained Scorer
    on pairs from the gate's cases, and both figures are the curve's."""
    job = await asyncio.to_thread(train_stage, env, "dpo", "scorer", args.scorer_steps, args, None)
    if "failed" in job:
        stages.append({"stage": "scorer-dpo", "failed": job["failed"], "wall_seconds": job["wall_seconds"]})
    else:
        gate = job["metrics"]["gate"]
        stages.append({"stage": "scorer-base", "scorer": gate["before"]})
        await save(stages, out)
        stages.append({"stage": "scorer-dpo", "scorer": gate["after"], "wall_seconds": job["wall_seconds"]}
                      | _job_metrics(job))  # fmt: skip
    await save(stages, out)


async def planner_stage(kb: Knowledge, settings: Settings, embedder: Embedder | None, held: Sequence[Case],
                        env: dict[str, str], method: str, steps: int, args: argparse.Namespace, init: Path | None,
                        stages: list[dict[str, Any]], out: Path) -> Path | None:  # fmt: skip
    """Train the planner with ``method`` from ``init``, measure the adapter, save; the adapter the next
    stage starts from (this one's if the gate promoted it, else ``init``)."""
    job = await asyncio.to_thread(train_stage, env, method, "planner", steps, args, init)
    stage: dict[str, Any] = {"stage": method, "wall_seconds": job["wall_seconds"]}
    if "failed" in job:
        stages.append(stage | {"failed": job["failed"]})
    else:
        stages.append(stage | _job_metrics(job) | await measure(kb, settings, embedder, held, job["adapter"]))
        if job["status"] == "promoted":
            init = Path(job["job"]["adapter_dir"])
    await save(stages, out)
    return init


async def save(stages: list[dict[str, Any]], out: Path) -> None:
    """Print the latest stage; write ``learning_curve.json`` and the PNG with every stage so far."""
    print(_summary_line(stages[-1]), flush=True)
    text = json.dumps(stages, indent=2, default=str)
    await asyncio.to_thread((out / "learning_curve.json").write_text, text, encoding="utf-8")
    await asyncio.to_thread(plot, stages, out / "learning_curve.png")


def _job_metrics(job: dict[str, Any]) -> dict[str, Any]:
    metrics = job["job"]["metrics"]
    return {
        "steps": metrics["steps"],
        "seconds_per_step": metrics["seconds_per_step"],
        "peak_rss_mb": metrics["peak_rss_mb"],
        "gate": job["status"],
        "gate_metrics": job["metrics"].get("gate"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="Default: <data_dir>/learning-curve.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--held", type=float, default=0.3, help="Share of documents held aside.")
    parser.add_argument("--eval-cases", type=int, default=8, help="Held-aside cases measured (and gated on).")
    parser.add_argument("--preference", choices=["dpo", "kto"], default="dpo")
    parser.add_argument("--sft-steps", type=int, default=36)
    parser.add_argument("--sft-learning-rate", type=float, default=1e-3)
    parser.add_argument("--pref-steps", type=int, default=4)
    parser.add_argument("--grpo-steps", type=int, default=1)
    parser.add_argument("--scorer-steps", type=int, default=12)
    parser.add_argument("--scorer-learning-rate", type=float, default=1e-3)
    parser.add_argument(
        "--stages",
        nargs="+",
        choices=["planner", "scorer", "grpo"],
        default=["planner", "scorer", "grpo"],
        help="Which parts to run: the planner's base, SFT and preference stages; the Scorer's; GRPO.",
    )
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--generations", type=int, default=4, help="GRPO completions per prompt (its batch).")
    parser.add_argument("--completion-length", type=int, default=160, help="GRPO tokens per completion.")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--knowledge-questions", type=int, default=60)
    parser.add_argument("--export-eval-fraction", type=float, default=0.05)
    args = parser.parse_args()
    out, training, held = prepare(args)
    stages = asyncio.run(run(args, out, training, held))
    print("\n".join(_summary_line(s) for s in stages))
    print(f"curve: {out / 'learning_curve.png'}; numbers: {out / 'learning_curve.json'}")


if __name__ == "__main__":
    main()
