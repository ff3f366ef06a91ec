"""``opsflow serve`` as a real process, and ``opsflow feedback list``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
from click.testing import CliRunner

from bot.cli import main
from core.settings import Settings
from tests.fakes.slack import fake_slack
from trainer.store import Interaction, RecordStore


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_serve_answers_health_logs_json_without_secrets_and_stops_on_sigterm(
    sample_kb: Settings, tmp_path: Path
) -> None:
    port = _free_port()
    async with fake_slack() as slack:
        env = {
            **os.environ,
            "OPSFLOW_DATA_DIR": str(sample_kb.data_dir),
            "OPSFLOW_RECORDS__URL": f"sqlite:///{tmp_path / 'records.sqlite'}",
            "OPSFLOW_SLACK__BOT_TOKEN": "xoxb-very-secret-token",
            "OPSFLOW_SLACK__SIGNING_SECRET": "signing-secret-value",
            "OPSFLOW_SLACK__API_URL": slack.url,
            "OPSFLOW_ALERTS__TOKEN": "alert-secret-value",
            "OPSFLOW_HTTP__PORT": str(port),
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "serve", env=env, cwd=tmp_path, stderr=asyncio.subprocess.PIPE
        )
        try:
            async with aiohttp.ClientSession() as http:
                for _ in range(200):
                    try:
                        health = await http.get(f"http://127.0.0.1:{port}/healthz")
                        break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.1)
                assert health.status == 200
                wrong = await http.post(
                    f"http://127.0.0.1:{port}/alerts/generic",
                    json={"name": "x"},
                    headers={"Authorization": "Bearer alert-secret-value-but-wrong"},
                )
                assert wrong.status == 401
        finally:
            process.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    lines = [json.loads(line) for line in stderr.decode().splitlines() if line.strip()]
    assert any(entry["msg"] == "serving" for entry in lines)
    assert any("shutting down" in entry["msg"] for entry in lines)
    for secret in ("xoxb-very-secret-token", "signing-secret-value", "alert-secret-value"):
        assert secret not in stderr.decode()


def test_serve_without_slack_configuration_says_what_to_set(tmp_path: Path) -> None:
    env = {"OPSFLOW_DATA_DIR": str(tmp_path), "OPSFLOW_SLACK__BOT_TOKEN": ""}
    result = CliRunner().invoke(main, ["serve"], env=env)
    assert result.exit_code == 1
    assert "OPSFLOW_SLACK__BOT_TOKEN" in result.output or "OPSFLOW_SLACK__SIGNING_SECRET" in result.output


async def test_feedback_list_shows_votes_reasons_and_edits(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'records.sqlite'}"
    records = RecordStore(url)
    answer = await records.add_interaction(Interaction(origin="slack", query="disk full on db-1", model="m1"))
    await records.record_feedback(answer.id, "U1", via="reaction", vote=1)
    await records.record_feedback(answer.id, "U2", via="button", vote=-1)
    await records.record_feedback(answer.id, "U2", via="modal", reason="wrong volume")
    await records.record_feedback(answer.id, "U3", via="edit", corrected={"title": "t", "steps": []})
    await records.aclose()

    def invoke(*args: str) -> str:
        result = CliRunner().invoke(main, ["feedback", "list", *args], env={"OPSFLOW_RECORDS__URL": url})
        assert result.exit_code == 0, result.output
        return result.output

    rows = [json.loads(line) for line in (await asyncio.to_thread(invoke, "--json")).splitlines()]
    by_user = {row["user"]: row for row in rows}
    assert by_user["U1"]["vote"] == 1 and by_user["U2"]["vote"] == -1
    assert by_user["U2"]["reason"] == "wrong volume" and by_user["U3"]["corrected"] is not None
    assert {row["query"] for row in rows} == {"disk full on db-1"}
    table = await asyncio.to_thread(invoke)
    assert "wrong volume" in table and "edited" in table
