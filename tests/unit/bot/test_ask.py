"""``opsflow ask`` and ``opsflow eval`` on the sample runbooks (real stores, real model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main
from core.settings import Settings


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, sample_kb: Settings) -> CliRunner:
    monkeypatch.chdir(Path(__file__).parent)
    monkeypatch.setenv("OPSFLOW_DATA_DIR", str(sample_kb.data_dir))
    return CliRunner()


def test_ask_json_has_the_documented_shape(cli: CliRunner) -> None:
    result = cli.invoke(main, ["ask", "--json", "Apps get FATAL: sorry, too many clients already from Postgres"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert {"query", "abstained", "workflow", "sources", "model", "latency_ms"} <= body.keys()
    assert body["abstained"] is False
    steps = body["workflow"]["steps"]
    assert steps[0]["id"] == "s1" and steps[-1]["type"] == "terminal"
    for step in steps:
        assert set(step) == {"id", "type", "text", "next", "branches", "citations"}
        assert step["citations"] and all(set(c) == {"doc_id", "chunk_id"} for c in step["citations"])
        assert step["citations"][0]["doc_id"] == "database/PostgresTooManyConnections.md"
        if step["type"] == "decision":
            assert set(step["branches"]) == {"yes", "no"} and step["next"] is None
    assert {s["doc_id"] for s in body["sources"]} == {"database/PostgresTooManyConnections.md"}


def test_ask_abstains_outside_the_runbooks_and_says_what_was_searched(cli: CliRunner) -> None:
    result = cli.invoke(main, ["ask", "How do I bake sourdough bread at home?"])
    assert result.exit_code == 0
    assert result.output.startswith("**No runbook matches:**")
    assert "Nearest documents searched:" in result.output and "Escalate" in result.output
    body = json.loads(cli.invoke(main, ["ask", "--json", "How do I bake sourdough bread at home?"]).output)
    assert body["abstained"] is True and body["workflow"] is None and body["searched"]


def test_eval_reports_stepscore_and_writes_predictions(cli: CliRunner, tmp_path: Path) -> None:
    cases = tmp_path / "cases.jsonl"
    rows = [
        {
            "id": "c1", "domain": "database", "query": "RabbitMQ orders queue keeps growing, consumers look stuck",
            "gold_steps": [{"type": "process", "text": "Check whether the queue has consumers"},
                           {"type": "terminal", "text": "Scale out the consumers"}],
            "doc_ids": ["messaging/RabbitMQQueueBacklogHigh.md"],
        },
        {"id": "c2", "domain": "other", "query": "how to bake bread", "gold_steps": [], "unanswerable": True},
    ]  # fmt: skip
    cases.write_text("\n".join(json.dumps(r) for r in rows))
    predictions = tmp_path / "preds.jsonl"
    result = cli.invoke(main, ["eval", str(cases), "--json", "--predictions", str(predictions)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["similarity"] == "minilm" and summary["planner"] == "extractive"
    s = summary["stepscore"]
    assert s["no_answer_accuracy"] == 1.0 and s["false_abstain_rate"] == 0.0
    assert 0 < s["f1"] <= 1 and s["overall_f1"] == pytest.approx((s["f1"] + 1) / 2, abs=1e-3)
    assert summary["retrieval"]["hit_at_1"] == 1.0
    lines = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert [(p["id"], p["abstain"]) for p in lines] == [("c1", False), ("c2", True)]
    report = cli.invoke(main, ["eval", str(cases)]).output
    assert "| overall_f1 |" in report and "| database | 1 |" in report
