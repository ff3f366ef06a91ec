"""The learning loop end to end: reactions in Slack → export → a tiny training run → gate → promotion →
the next answer names the new version.

The bot runs for real over HTTP (``tests.botharness``) on a small knowledge base of its own. Its LLM
is Ollama, faked on loopback because no Ollama server can run here: the fake answers ``/api/chat``
per model tag and keeps the models ``/api/create`` makes from the trained GGUF adapter. The training
is a real trl job on a tiny model built in-process (``tests.tinymodel``).
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from bot.app import open_knowledge
from bot.ingest import ingest
from bot.training import Training
from core.settings import Settings
from generation.prompts import SCORE_CRITERIA, SCORER_SYSTEM
from tests.botharness import RunningBot, running_bot
from tests.conftest import make_settings
from tests.fakes.ollama import FakeOllama, fake_ollama
from tests.tinymodel import build_tiny_model, require_train

BASE = "llama3.1:8b"
RUNBOOKS = {
    "DiskFull.md": "# DiskFull\n\n## Meaning\n\nThe root filesystem of a node is almost full and writes fail.\n\n"
    "## Diagnosis\n\n- Check disk usage with df -h on the node.\n- Find the largest directories under /var/log.\n\n"
    "## Mitigation\n\n- Delete rotated log files older than seven days.\n"
    "- Expand the volume if usage stays above ninety percent.\n",
    "CertificateExpiring.md": "# CertificateExpiring\n\n## Meaning\n\nA TLS certificate expires within a week.\n\n"
    "## Mitigation\n\n- Check which certificate expires with openssl s_client.\n"
    "- Renew the certificate through the issuer and reload the ingress.\n",
    "QueueBacklog.md": "# QueueBacklog\n\n## Meaning\n\nMessages pile up in the work queue.\n\n"
    "## Diagnosis\n\n- Check the consumer count on the queue.\n- Look for errors in the consumer logs.\n\n"
    "## Mitigation\n\n- Scale the consumers up and watch the backlog shrink.\n",
}
GOLD = [
    ("process", "Check disk usage with df -h on the node"),
    ("process", "Delete rotated log files older than seven days"),
    ("terminal", "Expand the volume if usage stays above ninety percent"),
]
WEAK = [("process", "Look at the system"), ("terminal", "Ask someone for help")]


def workflow_reply(steps: list[tuple[str, str]]) -> str:
    """A valid Planner reply: a chain of steps, each citing source [1]."""
    rows = [
        {"id": f"s{n}", "type": kind, "text": text, "next": f"s{n + 1}" if kind != "terminal" else None,
         "yes": None, "no": None, "sources": [1]}
        for n, (kind, text) in enumerate(steps, 1)
    ]  # fmt: skip
    return json.dumps({"title": "Workflow", "steps": rows})


def reply(body: dict[str, Any]) -> str:
    """The base model answers with weak steps, the models created from it (the trained candidate) with the gold."""
    return workflow_reply(WEAK if body["model"] == BASE else GOLD)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def small_kb(tmp_path: Path, model_cache: Path) -> Settings:
    """Three short runbooks, so the tiny model's prompts fit its context."""
    docs = tmp_path / "runbooks"
    docs.mkdir()
    for name, text in RUNBOOKS.items():
        (docs / name).write_text(text)
    settings = make_settings(tmp_path / "data", model_cache)

    async def build() -> None:
        async with open_knowledge(settings) as kb:
            assert not (await ingest([docs], kb.builder, max_bytes=100_000)).failed

    asyncio.run(build())
    return settings


def sections(ollama: FakeOllama, tmp_path: Path, tiny_base: Path) -> dict[str, dict[str, Any]]:
    cases = tmp_path / "cases.jsonl"
    case = {"id": "disk", "query": "the disk of node-3 is almost full", "doc_ids": ["DiskFull.md"],
            "gold_steps": [{"type": t, "text": x} for t, x in GOLD]}  # fmt: skip
    cases.write_text(json.dumps(case) + "\n")
    return {
        "llm": {"backend": "ollama"},
        "ollama": {"host": ollama.url, "model": BASE},
        "planner": {"kind": "llm", "abstain_below": 0.0},
        "train": {"base_model": str(tiny_base), "output_dir": str(tmp_path / "adapters"), "eval_cases": str(cases)},
    }


async def ask_and_react(bot: RunningBot, question: str, n: int, reaction: str | None) -> dict[str, Any]:
    """Mention the bot, wait for its card, react to it; returns the recorded answer."""
    event = {"type": "app_mention", "user": "U1", "text": f"<@UBOT> {question}", "ts": f"17000000{n:02}.000001",
             "channel": "C1"}  # fmt: skip
    assert (await bot.client.event(event, f"EvAsk{n}")).status == 200
    update = (await bot.slack.wait_for("chat.update", count=n))[n - 1]
    interaction = await bot.bot.kb.records.interaction_at("C1", update.args["ts"])
    assert interaction is not None
    if reaction is not None:
        item = {"type": "message", "channel": "C1", "ts": update.args["ts"]}
        added = {"type": "reaction_added", "user": f"U{n}", "reaction": reaction, "item": item}
        assert (await bot.client.event(added, f"EvReact{n}")).status == 200
    return {"model": interaction.model, "answer": interaction.answer}


@require_train
async def test_reactions_train_a_version_that_the_next_answer_names(
    small_kb: Settings, tmp_path: Path, tiny_base: Path
) -> None:
    async with (
        fake_ollama(reply, models=(BASE,)) as ollama,
        running_bot(small_kb, tmp_path / "records.sqlite", **sections(ollama, tmp_path, tiny_base)) as bot,
    ):
        first = await ask_and_react(bot, "the disk on node-3 is full, what now?", 1, "+1")
        await ask_and_react(bot, "disk almost full on the database host", 2, "-1")
        assert first["model"] == f"ollama:{BASE}" and first["answer"]["planner"] == "llm"
        votes = sorted(f.vote for f, _ in await bot.bot.kb.records.feedback())
        assert votes == [-1, 1]

        training = Training(bot.bot.settings, bot.bot.kb)
        outcome = await training.train("dpo", "planner", trigger="UADMIN", max_steps=2)

        version = outcome.version
        assert version.status == "promoted", version.metrics.get("gate")
        gate = version.metrics["gate"]
        assert gate["against"] == "base"
        assert gate["after"]["overall_f1"] > gate["before"]["overall_f1"]
        assert gate["after"]["schema_valid_rate"] == gate["before"]["schema_valid_rate"] == 1.0
        assert version.metrics["train"]["steps"] == 2 and version.data_hash
        # The adapter became an Ollama model (created for the gate's evaluation, then for serving).
        assert {(c["model"], c["from"]) for c in ollama.created} == {(f"opsflow-planner-v{version.id}", BASE)}
        job = json.loads(await asyncio.to_thread((outcome.job.adapter_dir.parent / "job.json").read_text))
        pairs = await asyncio.to_thread(Path(job["dataset_dir"], "train.jsonl").read_text)
        assert job["method"] == "dpo" and pairs.count("\n") >= 1, "trained on the exported pairs"

        after = await ask_and_react(bot, "node-3 disk is full again", 3, None)
        assert after["model"] == f"ollama:{BASE}+planner-v{version.id}"
        assert [s["text"] for s in after["answer"]["workflow"]["steps"]] == [text for _, text in GOLD]
        events = [e.action for e in await bot.bot.kb.records.audit_log(action="models.promote")]
        assert events == ["models.promote"]


def verdict_reply(body: dict[str, Any]) -> str:
    """The Scorer's verdicts: the base model rates every workflow 3; the trained one rates the runbook's
    steps in the runbook's order higher, and more of them higher."""
    user = body["messages"][-1]["content"]
    texts = [m.group(1) for m in re.finditer(r"^\S+ \[\w+\] (.*) \(", user.split("<workflow", 1)[1], re.M)]
    gold = [text for _, text in GOLD]
    in_order = [t for t in gold if t in texts] == texts
    ratings = dict.fromkeys(SCORE_CRITERIA, 3)
    if body["model"] != BASE:
        ratings |= {"ordered": 5 if in_order else 1, "complete": min(5, 2 + len(set(texts) & set(gold)))}
    return json.dumps(ratings | {"reasons": []})


def planner_or_scorer(body: dict[str, Any]) -> str:
    return verdict_reply(body) if body["messages"][0]["content"] == SCORER_SYSTEM else reply(body)


@require_train
async def test_a_trained_scorer_is_gated_on_its_pairwise_accuracy(
    small_kb: Settings, tmp_path: Path, tiny_base: Path
) -> None:
    async with (
        fake_ollama(planner_or_scorer, models=(BASE,)) as ollama,
        running_bot(small_kb, tmp_path / "records.sqlite", **sections(ollama, tmp_path, tiny_base)) as bot,
    ):
        await ask_and_react(bot, "the disk on node-3 is full, what now?", 1, "+1")
        await ask_and_react(bot, "disk almost full on the database host", 2, "-1")
        outcome = await Training(bot.bot.settings, bot.bot.kb).train("dpo", "scorer", trigger="UADMIN", max_steps=2)

        version = outcome.version
        gate = version.metrics["gate"]
        assert version.status == "promoted" and version.target == "scorer", gate
        # The base ties on every pair (a half each); the trained Scorer orders them all.
        assert gate["before"]["pairwise_accuracy"] == 0.5 and gate["before"]["ties"] == 1.0
        assert gate["after"]["pairwise_accuracy"] == 1.0 and gate["after"]["pairs"] >= 2
        assert {"shuffled", "decision_dropped"} <= set(gate["after"]["by_kind"])
        assert "overall_f1" not in gate["after"]  # the planner's measure is not the Scorer's
        assert bot.bot.kb.served.models["scorer"].name == f"ollama:{BASE}+scorer-v{version.id}"
