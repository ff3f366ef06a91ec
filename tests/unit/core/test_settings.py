from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from core.settings import Settings


def test_environment_variables_nest_with_double_underscore(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPSFLOW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("OPSFLOW_SLACK__BOT_TOKEN", "xoxb-secret")
    monkeypatch.setenv("OPSFLOW_SLACK__ADMINS", "U1, U2,,S3")
    monkeypatch.setenv("OPSFLOW_HTTP__PORT", "8080")
    monkeypatch.setenv("OPSFLOW_ALERTS__DEFAULT_CHANNEL", "#incidents")
    settings = Settings(_env_file=None)
    assert settings.data_dir == tmp_path
    assert settings.slack.admins == ("U1", "U2", "S3")
    assert settings.http.port == 8080
    assert settings.alerts.default_channel == "#incidents"
    assert settings.slack.bot_token is not None and settings.slack.bot_token.get_secret_value() == "xoxb-secret"
    assert "xoxb-secret" not in repr(settings)


def test_dotenv_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("OPSFLOW_RETRIEVAL__TOP_K=3\nOPSFLOW_SLACK__API_URL=http://127.0.0.1:9999/api\n")
    settings = Settings(_env_file=env)
    assert settings.retrieval.top_k == 3
    assert settings.slack.api_url == "http://127.0.0.1:9999/api/"


def test_records_default_to_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path, _env_file=None).records_url == f"sqlite:///{tmp_path}/records.sqlite"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OPSFLOW_RETRIEVAL__BACKEND": "elasticsearch"}, "OPSFLOW_RETRIEVAL__ES_URL"),
        ({"OPSFLOW_GRAPH__BACKEND": "neo4j"}, "OPSFLOW_GRAPH__NEO4J_URI"),
        ({"OPSFLOW_INGEST__CHUNK_WORDS": "50", "OPSFLOW_INGEST__CHUNK_OVERLAP": "50"}, "chunk_overlap"),
    ],
)
def test_contradictions_fail_early_with_the_setting_to_fix(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError, match=message):
        Settings(_env_file=None)
