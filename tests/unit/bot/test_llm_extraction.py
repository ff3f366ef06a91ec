"""Ingest with the LLM extractor through the real Ollama adapter and a loopback Ollama server."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.app import open_knowledge
from bot.ingest import ingest
from core.errors import ModelUnavailable
from core.settings import Settings
from tests.conftest import make_settings
from tests.fakes.ollama import fake_ollama, json_reply

PROSE = """# Handling a full disk on a database host

When the data volume of a PostgreSQL host fills up, writes fail and replicas fall behind.
First find what grew: usually pg_wal because a replication slot is stuck. Never delete WAL by hand.
"""

EXTRACTED = {
    "incidents": [
        {
            "name": "Database host disk full",
            "description": "The data volume fills up; writes fail and replicas fall behind.",
            "mitigation": ["Find what grew on the volume", "Drop or advance the stuck replication slot"],
            "typical_cases": ["A stuck replication slot keeps WAL"],
            "note": "Never delete WAL files by hand.",
            "aliases": ["NodeFilesystemSpaceFillingUp"],
            "components": ["PostgreSQL", "disk"],
        }
    ]
}


def llm_settings(tmp_path: Path, model_cache: Path, url: str) -> Settings:
    return make_settings(
        tmp_path / "data",
        model_cache,
        ingest={"extractor": "llm"},
        llm={"backend": "ollama"},
        ollama={"host": url, "model": "llama3.1:8b", "timeout_s": 5},
    )


async def test_nodes_come_from_the_models_json(tmp_path: Path, model_cache: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "disk-full.md").write_text(PROSE)
    async with fake_ollama(json_reply(EXTRACTED)) as server:
        settings = llm_settings(tmp_path, model_cache, server.url)
        async with open_knowledge(settings) as kb:
            report = await ingest([tmp_path / "docs"], kb.builder, max_bytes=10_000)
            (node,) = await kb.graph.named(["node filesystem space filling up"])
    assert report.added == ["disk-full.md"] and report.graph is not None
    assert node.name == "Database host disk full"
    assert node.mitigation == ("Find what grew on the volume", "Drop or advance the stuck replication slot")
    assert node.components == ("postgresql", "disk")
    assert node.chunk_ids == ("disk-full.md#0",)
    path, body = server.requests[0]
    assert path == "/api/chat" and body["model"] == "llama3.1:8b"
    assert body["format"]["required"] == ["incidents"]  # the JSON schema constrains decoding
    assert body["options"]["temperature"] == 0 and body["keep_alive"] == "10m"
    assert "<excerpt>" in body["messages"][1]["content"] and "pg_wal" in body["messages"][1]["content"]


async def test_an_unusable_reply_gives_no_nodes_but_keeps_the_document(tmp_path: Path, model_cache: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "disk-full.md").write_text(PROSE)
    async with fake_ollama(lambda _: '{"incidents": [{"name": ') as server:
        settings = llm_settings(tmp_path, model_cache, server.url)
        async with open_knowledge(settings) as kb:
            report = await ingest([tmp_path / "docs"], kb.builder, max_bytes=10_000)
            counts = {**await kb.index.counts(), **await kb.graph.counts()}
    assert report.added == ["disk-full.md"]
    assert counts["documents"] == 1 and counts["nodes"] == 0


async def test_a_missing_model_stops_ingest_with_host_and_model_named(tmp_path: Path, model_cache: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "disk-full.md").write_text(PROSE)
    async with fake_ollama(json_reply(EXTRACTED), models=("other:1b",)) as server:
        settings = llm_settings(tmp_path, model_cache, server.url)
        async with open_knowledge(settings) as kb:
            with pytest.raises(ModelUnavailable, match=f"{server.url}.*llama3.1:8b"):
                await ingest([tmp_path / "docs"], kb.builder, max_bytes=10_000)
            assert await kb.index.counts() == {"documents": 0, "chunks": 0}


async def test_an_unreachable_server_is_model_unavailable(tmp_path: Path, model_cache: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "disk-full.md").write_text(PROSE)
    settings = llm_settings(tmp_path, model_cache, "http://127.0.0.1:9")
    async with open_knowledge(settings) as kb:
        with pytest.raises(ModelUnavailable, match="unreachable"):
            await ingest([tmp_path / "docs"], kb.builder, max_bytes=10_000)


def test_ollama_needs_a_model(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="OPSFLOW_OLLAMA__MODEL"):
        Settings(data_dir=tmp_path, ingest={"extractor": "llm"}, llm={"backend": "ollama"}, _env_file=None)
