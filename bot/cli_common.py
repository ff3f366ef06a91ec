"""What every ``opsflow`` subcommand shares: settings from the environment, running a coroutine with
errors as one line, JSON output, and the documented ``ask --json`` shape of an answer."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from core.errors import OpsflowError
from core.settings import Settings
from core.types import Answer

T = TypeVar("T")


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise click.ClickException(f"invalid configuration:\n{exc}") from exc


def run(work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; an OpsflowError becomes a one-line error (exit 1), Ctrl-C exit 130."""
    try:
        return asyncio.run(work)
    except OpsflowError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        # Every store writes a document in one transaction, so what is there is whole.
        click.echo("interrupted: work finished so far is kept; run the command again to resume", err=True)
        sys.exit(130)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def answer_json(answer: Answer) -> dict[str, Any]:
    """The documented ``ask --json`` shape: steps in reading order with {doc_id, chunk_id} citations."""
    body = answer.model_dump(mode="json", include={"query", "abstained", "reason", "searched", "degraded"})
    steps = [] if answer.workflow is None else answer.workflow.steps
    body["workflow"] = (
        None
        if answer.workflow is None
        else {
            "title": answer.workflow.title,
            "steps": [
                {
                    "id": s.id,
                    "type": s.type,
                    "text": s.text,
                    "next": s.next,
                    "branches": s.branches.model_dump() if s.branches else None,
                    "citations": [{"doc_id": c.doc_id, "chunk_id": c.chunk_id} for c in s.citations],
                }
                for s in steps
            ],
        }
    )
    body["sources"] = [c.model_dump(mode="json") for c in answer.sources]
    body["model"] = answer.model
    body["confidence"] = answer.confidence
    body["planner"] = answer.planner
    body["latency_ms"] = answer.latency_ms
    return body
