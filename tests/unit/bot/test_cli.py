"""The ``opsflow`` command line, driven through click's runner on real embedded stores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import EXIT_PARTIAL, main
from core.settings import Settings


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(Path(__file__).parent)  # no stray .env
    return CliRunner()


def use(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    monkeypatch.setenv("OPSFLOW_DATA_DIR", str(settings.data_dir))


def test_ingest_prints_a_summary_and_exits_partial_on_bad_input(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch, settings: Settings, tmp_path: Path
) -> None:
    use(monkeypatch, settings)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "DiskFull.md").write_text("# DiskFull\n\n## Meaning\n\nFull.\n\n## Mitigation\n\nDelete old logs now.\n")
    (docs / "blob.md").write_bytes(b"\x00\x01")
    result = cli.invoke(main, ["ingest", str(docs)])
    assert result.exit_code == EXIT_PARTIAL
    assert "documents: 1 added, 0 changed, 0 unchanged, 0 removed" in result.output
    assert "knowledge base: 1 documents" in result.output
    assert "skipped blob.md: binary content" in result.output
    again = cli.invoke(main, ["ingest", "--json", str(docs / "DiskFull.md")])
    assert again.exit_code == 0
    report = json.loads(again.output)
    assert report["unchanged"] == 1 and report["partial"] is False and report["totals"]["documents"] == 1


def test_search_json_has_passages_and_nodes(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch, sample_kb: Settings
) -> None:
    use(monkeypatch, sample_kb)
    result = cli.invoke(main, ["search", "--json", "-k", "3", "RabbitMQ queue keeps growing"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["query"] == "RabbitMQ queue keeps growing"
    assert [p["ranks"].get("context") for p in body["passages"]][:4] == [None, None, None, 1]
    assert body["passages"][0]["chunk"]["doc_id"] == "messaging/RabbitMQQueueBacklogHigh.md"
    assert body["nodes"][0]["node"]["name"] == "RabbitMQQueueBacklogHigh"


def test_search_text_shows_sources_and_incidents(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch, sample_kb: Settings
) -> None:
    use(monkeypatch, sample_kb)
    result = cli.invoke(main, ["search", "CoreDNSErrorsHigh fired: SERVFAIL"])
    assert result.exit_code == 0
    assert "1. network/CoreDNSErrorsHigh.md" in result.output
    assert "incidents:" in result.output and "- CoreDNSErrorsHigh [named, 1.00]" in result.output


def test_search_on_an_empty_knowledge_base_says_what_to_do(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    use(monkeypatch, settings)
    result = cli.invoke(main, ["search", "anything"])
    assert result.exit_code == 0
    assert "run `opsflow ingest PATH` first" in result.output


def test_eval_retrieval_only_reports_hits_and_latency(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch, sample_kb: Settings, tmp_path: Path
) -> None:
    use(monkeypatch, sample_kb)
    cases = tmp_path / "cases.jsonl"
    rows = [
        {"id": "c1", "query": "too many clients already", "doc_ids": ["database/PostgresTooManyConnections.md"]},
        {
            "id": "c2",
            "query": "Redis evicting keys",
            "doc_ids": ["nope.md"],
            "related_doc_ids": ["database/RedisEvictionsHigh.md"],
        },
        {"id": "c3", "query": "how to bake bread", "doc_ids": [], "unanswerable": True},
    ]
    cases.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = cli.invoke(main, ["eval", str(cases), "--retrieval-only", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["cases"] == 3 and summary["answerable"] == 2
    assert summary["retrieval"] == {"hit_at_1": 1.0, "hit_at_5": 1.0, "mrr": 1.0}
    assert 0 < summary["latency_ms"]["p50"] <= summary["latency_ms"]["p95"]


def test_invalid_configuration_is_a_clear_error(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSFLOW_RETRIEVAL__BACKEND", "elasticsearch")
    result = cli.invoke(main, ["search", "x"])
    assert result.exit_code == 1
    assert "invalid configuration" in result.output and "OPSFLOW_RETRIEVAL__ES_URL" in result.output
