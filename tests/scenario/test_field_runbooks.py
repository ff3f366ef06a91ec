"""Runbooks written the way public repositories write them (``../shared/field/*.md`` and our own
instances of each kind in tests/data/field-runbooks), ingested beside the samples: a plain question
about each of their alerts gets a workflow of three steps or more that cites them."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from bot.app import open_knowledge
from bot.ingest import ingest
from core.settings import Settings
from core.types import Answer
from tests.conftest import BENCH, SAMPLES, make_settings

FIELD = BENCH.parent / "field"
OURS = Path(__file__).parents[1] / "data" / "field-runbooks"

# (document, plain question): the questions name symptoms, never the alert. The mixin's
# KubePersistentVolumeFillingUp is left out: its only text is a template ("{{ $labels… }} has {{ $value }}
# free"), and plain questions about a filling volume score under the abstention bar (known weakness).
QUESTIONS = [
    ("14-mixin-single-file-runbook.md", "kube api disappeared from prometheus target discovery, what now?"),
    ("14-mixin-single-file-runbook.md", "the kubelet is gone from prometheus targets"),
    ("14-mixin-single-file-runbook.md", "deployment replicas do not match what was asked for"),
    ("14-mixin-single-file-runbook.md", "a kubernetes job is taking more than an hour to complete"),
    ("14-mixin-single-file-runbook.md", "a kubernetes job failed to complete, what do I check?"),
    ("15-steps-under-runbook-heading.md", "api server error budget is burning fast, too many errors"),
    ("storage-alerts.md", "ceph cluster is getting near full, what should I clean up?"),
    ("storage-alerts.md", "an OSD is down in the ceph cluster"),
    ("queue-consumers.md", "messages are piling up and the consumers stopped acknowledging them"),
]


@pytest.fixture(scope="module")
def field_kb(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Settings:
    if not FIELD.exists():
        pytest.skip("../shared/field is not beside the checkout")
    root = tmp_path_factory.mktemp("field")
    shutil.copytree(SAMPLES, root / "samples")
    for path in [*FIELD.glob("*.md"), *OURS.glob("*.md")]:
        if path.name != "README.md":
            shutil.copy(path, root / path.name)
    settings = make_settings(tmp_path_factory.mktemp("field-kb"), model_cache)

    async def build() -> None:
        async with open_knowledge(settings) as kb:
            report = await ingest([root], kb.builder, max_bytes=settings.ingest.max_document_bytes)
            assert not report.failed, report.failed
            assert not [d for d, _ in report.no_procedure if not d.startswith("samples/")], report.no_procedure

    asyncio.run(build())
    return settings


async def ask(settings: Settings, question: str) -> Answer:
    async with open_knowledge(settings) as kb:
        answer, _ = await kb.service.answer(question)
        return answer


@pytest.mark.parametrize(("doc", "question"), QUESTIONS)
async def test_a_plain_question_gets_a_workflow_citing_the_runbook(field_kb: Settings, doc: str, question: str) -> None:
    answer = await ask(field_kb, question)
    assert not answer.abstained, answer.reason
    assert answer.workflow is not None and len(answer.workflow.steps) >= 3
    cited = {c.doc_id for s in answer.workflow.steps for c in s.citations}
    assert cited == {doc}, (question, cited)


async def test_notes_and_past_incidents_are_not_steps(field_kb: Settings) -> None:
    answer = await ask(field_kb, "messages are piling up and the consumers stopped acknowledging them")
    assert answer.workflow is not None
    texts = [s.text for s in answer.workflow.steps]
    assert not any("2024-02-11" in t or t.lower().startswith("warning") for t in texts), texts
    assert any("idempotent" in n for s in answer.workflow.steps for n in s.notes)
    assert any("incident 4312" in ref for ref in answer.workflow.see_also)
