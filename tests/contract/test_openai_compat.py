"""The OpenAI-compatible chat adapter against the shared ChatModel contract, on a real server:
``python -m llama_cpp.server`` serving the packaged gemma3-270m (tests/llamacpp_server.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from core.errors import ModelUnavailable
from core.settings import OpenAISettings
from generation.openai_compat import OpenAIChatModel
from tests.contract.chat_model import QUESTION, SCHEMA, ChatModelContract
from tests.llamacpp_server import LlamaCppServer, llamacpp_server, require_llamacpp_server

pytestmark = [require_llamacpp_server, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppServer]:
    with llamacpp_server(tmp_path_factory.mktemp("models")) as server:
        yield server


def settings_for(server: LlamaCppServer, **overrides: Any) -> OpenAISettings:
    """How llama-cpp-python's server is configured: schema as json_object, system text folded into the
    user turn (its gemma format drops system messages), a repeat penalty for the small base model."""
    cfg: dict[str, Any] = {
        "base_url": server.base_url,
        "api_key": SecretStr(server.api_key),
        "model": server.model,
        "timeout_s": 60,
        "response_format": "json_object",
        "system_role": False,
        "extra_body": {"repeat_penalty": 1.3},
    }
    return OpenAISettings(**(cfg | overrides))


@pytest.fixture
async def openai_chat(server: LlamaCppServer) -> AsyncIterator[Callable[..., OpenAIChatModel]]:
    """Adapters for ``server`` with ``settings_for``'s overrides; closed after the test."""
    made: list[OpenAIChatModel] = []

    def make(**overrides: Any) -> OpenAIChatModel:
        made.append(OpenAIChatModel(settings_for(server, **overrides)))
        return made[-1]

    yield make
    for model in made:
        await model.aclose()


class TestOpenAIChatModel(ChatModelContract):
    @pytest.fixture
    async def chat(self, openai_chat: Callable[..., OpenAIChatModel]) -> OpenAIChatModel:
        return openai_chat()

    @pytest.fixture
    async def unreachable(self, openai_chat: Callable[..., OpenAIChatModel]) -> OpenAIChatModel:
        return openai_chat(base_url="http://127.0.0.1:9/v1", timeout_s=2)

    @pytest.fixture
    async def unlisted(self, openai_chat: Callable[..., OpenAIChatModel]) -> OpenAIChatModel:
        return openai_chat(model="qwen3-4b")


async def test_the_name_is_the_served_model(openai_chat: Callable[..., OpenAIChatModel]) -> None:
    assert openai_chat().name == "openai:gemma3-270m"


async def test_a_wrong_key_is_refused(openai_chat: Callable[..., OpenAIChatModel]) -> None:
    with pytest.raises(ModelUnavailable, match="401"):
        await openai_chat(api_key=SecretStr("wrong")).complete(QUESTION, max_tokens=8)


async def test_a_server_refusing_json_schema_names_the_setting(openai_chat: Callable[..., OpenAIChatModel]) -> None:
    with pytest.raises(ModelUnavailable, match="OPSFLOW_OPENAI__RESPONSE_FORMAT=json_object"):
        await openai_chat(response_format="json_schema").complete(QUESTION, schema=SCHEMA, max_tokens=8)
