"""The ``opsflow`` command line: translate arguments to use cases and results to text or JSON."""

from __future__ import annotations

import asyncio
import functools
import getpass
import json
import sys
from pathlib import Path
from typing import Any

import click
from pydantic import SecretStr

from bot.app import build_bot, open_knowledge
from bot.cli_checks import checks_command
from bot.cli_common import answer_json, load_settings, print_json, run
from bot.cli_training import models_group, schedule_group, train_group
from bot.evaluation import evaluate, evaluate_retrieval, load_cases, markdown_report
from bot.ingest import IngestReport, ingest
from bot.logs import configure_logging
from bot.server import serve_forever
from bot.service import PlannerKind
from bot.training import open_training
from bot.training_commands import admin_commands
from core.settings import Settings
from core.types import Answer, Retrieval
from generation.rendering import render_markdown
from trainer.store import Feedback, Interaction, RecordStore

EXIT_PARTIAL = 3  # ingest finished, but some documents were skipped as bad input


@click.group()
@click.version_option(package_name="opsflow")
def main() -> None:
    """opsflow: troubleshooting workflows grounded in your runbooks."""


@main.command("ingest")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def ingest_command(paths: tuple[Path, ...], as_json: bool) -> None:
    """Add, update and remove documents under PATHS (files or folders) in the knowledge base."""
    settings = load_settings()

    async def work() -> tuple[IngestReport, dict[str, int]]:
        async with open_knowledge(settings) as kb:
            with _ProgressBar(enabled=not as_json) as bar:
                report = await ingest(paths, kb.builder, max_bytes=settings.ingest.max_document_bytes, progress=bar)
            counts = {**await kb.index.counts(), **await kb.graph.counts()}
            await kb.records.audit(getpass.getuser(), "ingest", {"paths": [str(p) for p in paths], **report.as_dict()})
            return report, counts

    report, counts = run(work())
    if as_json:
        print_json({**report.as_dict(), "totals": counts})
    else:
        _print_ingest_summary(report, counts)
    if report.partial:
        sys.exit(EXIT_PARTIAL)


class _ProgressBar:
    """A tqdm bar on stderr, shown only on a terminal."""

    def __init__(self, *, enabled: bool) -> None:
        from tqdm import tqdm

        self._bar = tqdm(unit="doc", file=sys.stderr, disable=None if enabled else True, leave=False)

    def start(self, total: int) -> None:
        self._bar.reset(total=total)

    def advance(self, doc_id: str) -> None:
        self._bar.set_postfix_str(doc_id[-40:], refresh=False)
        self._bar.update()

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.close()


def _print_ingest_summary(report: IngestReport, counts: dict[str, int]) -> None:
    click.echo(
        f"documents: {len(report.added)} added, {len(report.changed)} changed, {report.unchanged} unchanged, "
        f"{len(report.removed)} removed; {report.chunks} chunks written in {report.seconds:.1f}s"
    )
    graph = "graph unchanged" if report.graph is None else f"graph rebuilt from {report.graph.candidates} candidates"
    click.echo(
        f"knowledge base: {counts['documents']} documents, {counts['chunks']} chunks, "
        f"{counts['nodes']} incident nodes, {counts['relations']} relations ({graph})"
    )
    for doc_id, reason in report.failed:
        click.echo(f"skipped {doc_id}: {reason}", err=True)
    if report.no_procedure:
        read = len(report.added) + len(report.changed)
        click.echo(
            f"no procedure found in {len(report.no_procedure)} of {read} documents read (no workflow from them):"
        )
        for doc_id, reason in report.no_procedure:
            click.echo(f"  {doc_id}: {reason}")
    if report.ignored:
        click.echo(f"ignored {len(report.ignored)} files of unsupported types", err=True)
    if report.partial:
        click.echo(f"partial ingest: {len(report.failed)} documents skipped", err=True)


@main.command("search")
@click.argument("query")
@click.option("-k", "--top-k", type=click.IntRange(1, 100), default=None, help="Passages to return.")
@click.option("--json", "as_json", is_flag=True, help="Print the retrieval as JSON.")
def search_command(query: str, top_k: int | None, as_json: bool) -> None:
    """Show what the knowledge base retrieves for QUERY: passages and incident nodes."""
    settings = load_settings()

    async def work() -> Retrieval:
        async with open_knowledge(settings) as kb:
            return await kb.retriever.retrieve(query, k=top_k)

    result = run(work())
    if as_json:
        print_json(result.model_dump(mode="json"))
    else:
        _print_retrieval(result)


def _print_retrieval(result: Retrieval) -> None:
    for note in result.degraded:
        click.secho(f"degraded: {note}", fg="yellow", err=True)
    if not result.passages:
        click.echo("nothing found: is the knowledge base empty? run `opsflow ingest PATH` first")
    for n, p in enumerate(result.passages, start=1):
        ranks = ", ".join(f"{name} #{rank}" for name, rank in p.ranks.items())
        click.secho(f"{n}. {p.chunk.doc_id} › {' › '.join(p.chunk.heading_path) or p.chunk.title}", bold=True)
        click.echo(f"   score {p.score:.4f} ({ranks})")
        click.echo("   " + " ".join(p.chunk.text.split())[:300])
    if result.nodes:
        click.secho("\nincidents:", bold=True)
    for hit in result.nodes:
        node = hit.node
        click.echo(f"- {node.name} [{hit.via}, {hit.score:.2f}] from {', '.join(node.doc_ids)}")
        if node.description:
            click.echo(f"    what: {node.description[:200]}")
        for step in node.mitigation[:5]:
            click.echo(f"    step: {step[:160]}")
    click.echo(f"\n({result.took_ms:.0f} ms)")


_PLANNER = click.option(
    "--planner", type=click.Choice(["extractive", "llm"]), default=None, help="Override OPSFLOW_PLANNER__KIND."
)


@main.command("ask")
@click.argument("query")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@_PLANNER
def ask_command(query: str, as_json: bool, planner: PlannerKind | None) -> None:
    """Answer QUERY with a troubleshooting workflow from the runbooks, or say that none matches."""
    settings = load_settings()

    async def work() -> Answer:
        async with open_knowledge(settings) as kb:
            answer, _ = await kb.service.answer(query, planner=planner)
            return answer

    answer = run(work())
    if as_json:
        print_json(answer_json(answer))
    else:
        for note in answer.degraded:
            click.secho(f"degraded: {note}", fg="yellow", err=True)
        click.echo(render_markdown(answer))


@main.command("eval")
@click.argument("cases", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--retrieval-only", is_flag=True, help="Measure retrieval only (hit@1, hit@5, MRR, latency).")
@click.option(
    "--predictions", type=click.Path(dir_okay=False, path_type=Path), help="Write each case's workflow here (JSONL)."
)
@_PLANNER
def eval_command(
    cases: Path, as_json: bool, retrieval_only: bool, predictions: Path | None, planner: PlannerKind | None
) -> None:
    """Run the benchmark CASES (JSONL) and report STEPScore, retrieval hits and latency."""
    settings = load_settings()
    loaded = load_cases(cases)

    async def work() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async with open_knowledge(settings) as kb:
            if retrieval_only:
                summary, _ = await evaluate_retrieval(kb.retriever, loaded)
                return summary, []
            return await evaluate(kb.service, kb.embedder, loaded, planner=planner or settings.planner.kind)

    summary, lines = run(work())
    if predictions is not None and lines:
        predictions.write_text("".join(json.dumps(line) + "\n" for line in lines))
    if as_json:
        print_json(summary)
    elif retrieval_only:
        r, lat = summary["retrieval"], summary["latency_ms"]
        click.echo(f"{summary['cases']} cases ({summary['answerable']} answerable)")
        click.echo(f"hit@1 {r['hit_at_1']:.3f}  hit@5 {r['hit_at_5']:.3f}  MRR {r['mrr']:.3f}")
        click.echo(f"latency p50 {lat['p50']:.1f} ms  p95 {lat['p95']:.1f} ms")
    else:
        click.echo(markdown_report(summary))


@main.command("serve")
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning"]))
def serve_command(log_level: str) -> None:
    """Run the Slack app and the alert webhooks (OPSFLOW_HTTP__HOST:PORT) until SIGTERM."""
    settings = load_settings()
    secrets = [s.get_secret_value() for s in _secrets(settings)]
    configure_logging(log_level, secrets)

    async def work() -> None:
        async with open_knowledge(settings) as kb, open_training(settings, kb, lead=True) as (training, scheduler):
            commands = admin_commands(settings, training, scheduler)
            # Bolt reads files as it starts: build it off the event loop.
            bot = await asyncio.to_thread(functools.partial(build_bot, settings, kb, admin_commands=commands))
            await serve_forever(bot)

    run(work())


def _secrets(settings: Settings) -> list[SecretStr]:
    slack, alerts = settings.slack, settings.alerts
    values = (slack.bot_token, slack.signing_secret, slack.app_token, alerts.token, alerts.pagerduty_secret)
    return [v for v in (*values, settings.retrieval.es_api_key, settings.graph.neo4j_password) if v]


@main.group("feedback")
def feedback_group() -> None:
    """What people said about the bot's answers."""


@feedback_group.command("list")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of a table.")
def feedback_list_command(limit: int, as_json: bool) -> None:
    """The latest feedback, newest first: answer, user, vote, reason, edits, time."""
    settings = load_settings()

    async def work() -> list[dict[str, Any]]:
        records = RecordStore(settings.records_url)
        try:
            return [_feedback_row(f, i) for f, i in await records.feedback(limit=limit)]
        finally:
            await records.aclose()

    rows = run(work())
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False))
        return
    if not rows:
        click.echo("no feedback yet")
    for row in rows:
        vote = {1: "👍", -1: "👎", 0: "·"}[row["vote"]]
        extras = [f"reason: {row['reason']}"] if row["reason"] else []
        extras += ["edited"] if row["corrected"] else []
        extras += [f"flags: {row['step_flags']}"] if row["step_flags"] else []
        click.echo(f"{row['at']}  #{row['answer']} {vote} {row['user']}  {row['query'][:60]!r}  {'; '.join(extras)}")


def _feedback_row(feedback: Feedback, interaction: Interaction) -> dict[str, Any]:
    return {
        "answer": interaction.id,
        "query": interaction.query,
        "model": interaction.model,
        "user": feedback.user,
        "vote": feedback.vote,
        "reason": feedback.reason,
        "corrected": feedback.corrected,
        "step_flags": feedback.step_flags,
        "via": feedback.via,
        "at": feedback.updated_at.isoformat(timespec="seconds"),
    }


for command in (checks_command, train_group, models_group, schedule_group):
    main.add_command(command)
