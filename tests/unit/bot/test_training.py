"""The learning loop's bot side: ``opsflow train export``, ``models``, ``schedule``, and the served model."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bot.app import open_knowledge
from bot.cli import main
from bot.training import gate_metrics, open_training
from bot.training_commands import admin_commands
from core.settings import Settings
from trainer.registry import ModelRegistry
from trainer.store import ExecutorRun, Interaction, RecordStore


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, sample_kb: Settings, tmp_path: Path) -> CliRunner:
    """The sample knowledge base (read only), with records and adapters of this test's own."""
    monkeypatch.chdir(Path(__file__).parent)  # no stray .env
    monkeypatch.setenv("OPSFLOW_DATA_DIR", str(sample_kb.data_dir))
    monkeypatch.setenv("OPSFLOW_RECORDS__URL", f"sqlite:///{tmp_path}/records.sqlite")
    monkeypatch.setenv("OPSFLOW_TRAIN__OUTPUT_DIR", str(tmp_path / "adapters"))
    return CliRunner()


def settings_of(tmp_path: Path, sample_kb: Settings) -> Settings:
    return sample_kb.model_copy(
        update={
            "records": sample_kb.records.model_copy(update={"url": f"sqlite:///{tmp_path}/records.sqlite"}),
            "train": sample_kb.train.model_copy(update={"output_dir": tmp_path / "adapters"}),
        }
    )


async def answer_and_judge(settings: Settings, judgements: list[tuple[str, dict[str, int]]]) -> None:
    """Answer each question as the bot does and record it whole, then the users' votes on it."""
    async with open_knowledge(settings) as kb:
        for query, votes in judgements:
            answer, retrieval = await kb.service.answer(query)
            interaction = await kb.records.add_interaction(
                Interaction(
                    origin="slack",
                    query=query,
                    answer=answer.model_dump(mode="json"),
                    context={"query": query, "retrieval": retrieval.model_dump(mode="json")},
                    model=answer.model,
                    planner=answer.planner,
                )
            )
            for user, vote in votes.items():
                await kb.records.record_feedback(interaction.id, user, via="reaction", vote=vote)


def test_export_writes_the_datasets_in_trl_formats(cli: CliRunner, sample_kb: Settings, tmp_path: Path) -> None:
    asyncio.run(
        answer_and_judge(
            settings_of(tmp_path, sample_kb),
            [
                ("too many clients already on postgres", {"U1": 1, "U2": 1}),
                ("redis keeps evicting keys", {"U1": -1}),
                ("RabbitMQ queue keeps growing", {"U3": 1}),
            ],
        )
    )
    out = tmp_path / "export"
    result = cli.invoke(main, ["train", "export", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.output)
    assert manifest["judged_answers"] == 3 and manifest["left_out"] == 0 and manifest["knowledge_questions"] >= 13
    sizes = manifest["sizes"]
    assert sum(sizes["kto"].values()) == 3  # one unpaired label per judged answer
    assert sum(sizes["dpo"].values()) >= 13  # few human pairs: synthesised pairs top them up
    for name, size in sizes.items():
        for split in ("train", "eval"):
            rows = [json.loads(line) for line in (out / name / f"{split}.jsonl").read_text().splitlines()]
            assert len(rows) == size[split]
            if rows:
                assert rows[0]["prompt"][0]["role"] == "system"
    kto = [
        json.loads(line)
        for split in ("train", "eval")
        for line in (out / "kto" / f"{split}.jsonl").read_text().splitlines()
    ]
    assert sorted(row["label"] for row in kto) == [False, True, True]
    assert json.loads((out / "manifest.json").read_text())["snapshot"] == manifest["snapshot"]

    again = cli.invoke(main, ["train", "export", "--out", str(tmp_path / "again"), "--json"])
    assert json.loads(again.output)["snapshot"] == manifest["snapshot"]  # same records, same data

    text = cli.invoke(main, ["train", "export", "--out", str(out)])
    assert text.exit_code == 0 and f"snapshot {manifest['snapshot']}" in text.output
    assert "kto" in text.output and "held-back evaluation cases" in text.output


async def failed_then_fixed_run(settings: Settings, query: str) -> None:
    """An executor run that failed, then one that resolved the same incident (AOI's training signal)."""
    async with open_knowledge(settings) as kb:
        answer, retrieval = await kb.service.answer(query)
        assert answer.workflow is not None
        shorter = answer.workflow.model_copy(update={"steps": answer.workflow.steps[-1:]})
        for workflow, outcome in ((shorter, "not_resolved"), (answer.workflow, "resolved")):
            run = ExecutorRun(
                query=query,
                workflow=workflow.model_dump(mode="json"),
                steps={"events": [], "retrieval": retrieval.model_dump(mode="json")},
                state="finished",
                outcome=outcome,
            )
            await kb.records.transaction(lambda session, run=run: session.add(run))


def test_export_turns_a_failed_run_into_a_pair(cli: CliRunner, sample_kb: Settings, tmp_path: Path) -> None:
    asyncio.run(failed_then_fixed_run(settings_of(tmp_path, sample_kb), "too many clients already on postgres"))
    result = cli.invoke(main, ["train", "export", "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["execution_pairs"] == 1


async def add_versions(settings: Settings, n: int) -> list[int]:
    records = RecordStore(settings.records_url)
    try:
        registry = ModelRegistry(records)
        made = [
            await registry.add_candidate(
                target="planner",
                method="dpo",
                base="base.gguf",
                adapter=f"/a/{i}.gguf",
                data_hash=f"h{i}",
                metrics={},
                trigger="test",
            )
            for i in range(n)
        ]
        return [v.id for v in made]
    finally:
        await records.aclose()


def test_models_are_listed_promoted_and_rolled_back(cli: CliRunner, sample_kb: Settings, tmp_path: Path) -> None:
    first, second = asyncio.run(add_versions(settings_of(tmp_path, sample_kb), 2))
    listing = cli.invoke(main, ["models", "list"]).output.splitlines()
    assert [line.split()[:4] for line in listing] == [
        [str(second), f"planner-v{second}", "dpo", "candidate"],
        [str(first), f"planner-v{first}", "dpo", "candidate"],
    ]
    for version in (first, second):
        result = cli.invoke(main, ["models", "promote", str(version)])
        assert result.exit_code == 0 and f"planner-v{version} is now served" in result.output
    listed = json.loads(cli.invoke(main, ["models", "list", "--json"]).output)
    assert [(v["id"], v["status"]) for v in listed] == [(second, "promoted"), (first, "retired")]
    rolled = cli.invoke(main, ["models", "rollback", "--target", "planner"])
    assert rolled.exit_code == 0 and f"planner-v{second} rolled back; now serving planner-v{first}" in rolled.output
    assert cli.invoke(main, ["models", "rollback"]).output.endswith("now serving the base model\n")
    nothing = cli.invoke(main, ["models", "rollback"])
    assert nothing.exit_code == 1 and "nothing to roll back" in nothing.output
    missing = cli.invoke(main, ["models", "promote", "999"])
    assert missing.exit_code == 1 and "no model version 999" in missing.output


def test_schedules_are_added_listed_run_and_removed(cli: CliRunner) -> None:
    bad = cli.invoke(main, ["schedule", "add", "nightly", "0 25 * * *"])
    assert bad.exit_code == 2 and "invalid cron expression '0 25 * * *'" in bad.output
    added = cli.invoke(main, ["schedule", "add", "nightly", "0 3 * * *", "--method", "kto", "--min-feedback", "2"])
    assert added.exit_code == 0, added.output
    assert "schedule nightly added: kto for the planner, next" in added.output
    listed = json.loads(cli.invoke(main, ["schedule", "list", "--json"]).output)
    assert [(s["name"], s["cron"], s["method"], s["min_new_feedback"]) for s in listed] == [
        ("nightly", "0 3 * * *", "kto", 2)
    ]
    assert listed[0]["next_run"].endswith("03:00:00+00:00")
    ran = cli.invoke(main, ["schedule", "run", "nightly"])
    assert ran.exit_code == 0 and "skipped: 0 new feedback since the last planner training, 2 needed" in ran.output
    assert cli.invoke(main, ["schedule", "remove", "nightly"]).exit_code == 0
    gone = cli.invoke(main, ["schedule", "remove", "nightly"])
    assert gone.exit_code == 1 and "no schedule named 'nightly'" in gone.output
    assert "no schedules" in cli.invoke(main, ["schedule", "list"]).output


async def test_the_served_planner_follows_promotions_and_rollbacks(sample_kb: Settings, tmp_path: Path) -> None:
    settings = settings_of(tmp_path, sample_kb)
    adapter = tmp_path / "adapter.gguf"
    await asyncio.to_thread(adapter.write_bytes, b"GGUF")  # never loaded: only the name is asked for
    async with open_knowledge(settings) as kb:
        planner = kb.served.models["planner"]
        base = planner.name
        registry = ModelRegistry(kb.records)
        version = await registry.add_candidate(
            target="planner", method="dpo", base="b", adapter=str(adapter), data_hash="h", metrics={}, trigger="t"
        )
        await registry.promote(version.id, actor="t")
        assert planner.name == base  # until the registry is checked again
        assert await kb.served.refresh() == [f"{base}+planner-v{version.id}"]
        assert planner.version is not None and planner.version.id == version.id
        assert kb.served.models["scorer"].name == base  # the Scorer has no promoted version

        broken = await registry.add_candidate(
            target="planner", method="dpo", base="b", adapter=str(tmp_path / "gone.gguf"), data_hash="h", metrics={},
            trigger="t",
        )  # fmt: skip
        await registry.promote(broken.id, actor="t")
        assert await kb.served.refresh() == []  # an adapter that cannot be served leaves the last one serving
        assert planner.name == f"{base}+planner-v{version.id}"

        await registry.rollback("planner", actor="t")
        await registry.rollback("planner", actor="t")
        assert await kb.served.refresh() == [base]


def test_the_next_planner_picks_up_a_promotion_made_elsewhere(sample_kb: Settings, tmp_path: Path) -> None:
    settings = settings_of(tmp_path, sample_kb)
    settings = settings.model_copy(update={"train": settings.train.model_copy(update={"reload_s": 0.2})})
    adapter = tmp_path / "adapter.gguf"
    adapter.write_bytes(b"GGUF")

    async def run() -> str:
        async with open_knowledge(settings) as kb:
            other = RecordStore(settings.records_url)  # another process: the CLI, or a replica's training
            registry = ModelRegistry(other)
            version = await registry.add_candidate(
                target="planner", method="kto", base="b", adapter=str(adapter), data_hash="h", metrics={}, trigger="t"
            )
            await registry.promote(version.id, actor="t")
            await other.aclose()
            await asyncio.sleep(1.0)  # a few of the background checks
            return kb.served.models["planner"].name

    assert asyncio.run(run()).endswith("+planner-v1")


@pytest.mark.parametrize(
    ("predictions", "fallbacks", "valid"),
    [
        ([{"abstain": False}] * 4, 1, 0.75),
        ([{"abstain": False}, {"abstain": True}], 0, 1.0),
        ([{"abstain": True}], 0, 1.0),
    ],
)
def test_gate_metrics_count_the_models_own_valid_workflows(
    predictions: list[dict[str, Any]], fallbacks: int, valid: float
) -> None:
    summary = {"stepscore": {"overall_f1": 0.4}, "fallbacks": fallbacks, "cases": len(predictions), "model": "m"}
    metrics = gate_metrics(summary, predictions)
    assert (metrics["overall_f1"], metrics["schema_valid_rate"]) == (0.4, valid)


async def test_admin_commands_in_slack(sample_kb: Settings, tmp_path: Path) -> None:
    settings = settings_of(tmp_path, sample_kb)
    async with open_knowledge(settings) as kb, open_training(settings, kb, lead=False) as (training, scheduler):
        commands = admin_commands(settings, training, scheduler)
        assert await commands["schedule"]('add nightly "0 3 * * *" kto', "UADMIN") == (
            f"Schedule `nightly` saved; next run {(await scheduler.list())[0].next_run:%Y-%m-%d} 03:00 UTC."
        )
        assert (await scheduler.list())[0].spec.added_by == "UADMIN"
        assert "invalid cron" in await commands["schedule"]('add bad "0 3 * *"', "UADMIN")
        assert await commands["schedule"]("", "UADMIN") == "• `nightly` `0 3 * * *` kto planner"
        assert "0 new feedback" in await commands["schedule"]("run nightly", "UADMIN")
        assert await commands["schedule"]("remove nightly", "UADMIN") == "Schedule `nightly` removed."
        assert await commands["models"]("", "UADMIN") == "No versions."
        assert (await commands["models"]("rollback sideways", "UADMIN")).startswith("Usage:")
        assert (await commands["train"]("run ppo", "UADMIN")).startswith("Usage:")
        assert (await commands["train"]("export", "UADMIN")).startswith("Datasets `")
    assert [e.actor for e in await _audit(settings)][:2] == ["UADMIN", "UADMIN"]


async def _audit(settings: Settings) -> list[Any]:
    records = RecordStore(settings.records_url)
    try:
        return await records.audit_log(action="schedule.remove") + await records.audit_log(action="schedule.add")
    finally:
        await records.aclose()
