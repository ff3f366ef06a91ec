"""The structure lint over the workflow of every runbook the dev split cites (issue: workflows an
on-call engineer can follow). Planned from the whole runbook, as the planner sees it after retrieval."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest

from connectors.documents import list_documents, parse_document, read_bytes
from core.types import Passage, Retrieval, Workflow
from generation.extractive import plan_extractive
from generation.lint import lint
from retrieval.chunking import chunk_document

BENCH = Path(__file__).resolve().parents[3].parent / "shared" / "bench"
CASES = BENCH / "cases.dev.jsonl"
pytestmark = pytest.mark.skipif(not CASES.exists(), reason="the shared benchmark is not beside the checkout")


def _doc_ids() -> list[str]:
    if not CASES.exists():
        return []
    cases = [json.loads(line) for line in CASES.read_text().splitlines() if line.strip()]
    return sorted({d for c in cases for d in c["doc_ids"]})


@cache
def workflow(doc_id: str) -> Workflow | None:
    (file,) = list_documents(Path(BENCH / "corpus" / doc_id)).files
    doc = parse_document(file, read_bytes(file, 5_000_000))
    chunks = chunk_document(doc)
    return plan_extractive(Retrieval(query=doc.title, passages=tuple(Passage(chunk=c, score=1.0) for c in chunks)))


def test_every_cited_runbook_gives_a_workflow_that_passes_the_lint() -> None:
    problems = {d: lint(w) for d in _doc_ids() if (w := workflow(d)) is not None}
    assert len(problems) >= 0.95 * len(_doc_ids())  # nearly every cited runbook gives a workflow
    assert {d: p for d, p in problems.items() if p} == {}
