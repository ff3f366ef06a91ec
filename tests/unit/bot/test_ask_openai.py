"""``opsflow ask --planner llm`` end to end with ``OPSFLOW_LLM__BACKEND=openai`` against a real
OpenAI-compatible server (llama-cpp-python's, serving the packaged gemma3-270m) on the sample runbooks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main
from core.settings import Settings
from tests.llamacpp_server import LlamaCppServer, llamacpp_server, require_llamacpp_server

# Minutes on a busy 2-core machine (prompt evaluation on one thread); about half a minute on an idle one.
pytestmark = [require_llamacpp_server, pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppServer]:
    with llamacpp_server(tmp_path_factory.mktemp("models")) as server:
        yield server


def test_ask_with_the_llm_planner_answers_through_the_server(
    monkeypatch: pytest.MonkeyPatch, sample_kb: Settings, server: LlamaCppServer
) -> None:
    monkeypatch.chdir(Path(__file__).parent)
    env = {
        "DATA_DIR": str(sample_kb.data_dir),
        "LLM__BACKEND": "openai",
        "OPENAI__BASE_URL": server.base_url,
        "OPENAI__API_KEY": server.api_key,
        "OPENAI__MODEL": server.model,
        "OPENAI__RESPONSE_FORMAT": "json_object",
        "OPENAI__SYSTEM_ROLE": "false",
        "OPENAI__EXTRA_BODY": '{"repeat_penalty": 1.3}',
        # Keep the test fast: a short prompt, and a reply so short that the workflow is cut off (the
        # fallback below is then the outcome: the small base model writes no valid workflow anyway).
        "RETRIEVAL__TOP_K": "3",
        "OPENAI__MAX_TOKENS": "24",
    }
    for name, value in env.items():
        monkeypatch.setenv(f"OPSFLOW_{name}", value)
    query = "pods keep restarting with CrashLoopBackOff, what should I do?"
    result = CliRunner().invoke(main, ["ask", "--json", "--planner", "llm", query])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["abstained"] is False and body["workflow"]["steps"] and body["degraded"] == []
    if body["planner"] == "llm":
        assert body["model"] == "openai:gemma3-270m"
    else:  # the model answered, but not with a valid workflow: the documented fallback, saying so
        assert body["planner"] == "extractive (fallback)"
        assert "the model's workflow was invalid" in body["reason"] and "unavailable" not in body["reason"]
