"""The LLM planner path through the real Ollama adapter against a loopback Ollama server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.app import open_knowledge
from core.settings import Settings
from tests.fakes.ollama import fake_ollama

QUESTION = "Apps get FATAL: sorry, too many clients already from Postgres"


def workflow(*, cite: int = 1, broken: bool = False) -> dict[str, Any]:
    return {
        "title": "Too many Postgres connections",
        "steps": [
            {"id": "s1", "type": "process", "text": "Count connections per application", "next": "s2",
             "yes": None, "no": None, "sources": [cite]},
            {"id": "s2", "type": "decision", "text": "Are most connections idle?", "next": None,
             "yes": "s3", "no": "s9" if broken else "s4", "sources": [cite]},
            {"id": "s3", "type": "terminal", "text": "Terminate idle sessions and add a pooler", "next": None,
             "yes": None, "no": None, "sources": [cite]},
            {"id": "s4", "type": "terminal", "text": "Escalate to the database team", "next": None,
             "yes": None, "no": None, "sources": [cite]},
        ],
    }  # fmt: skip


def is_scoring(body: dict[str, Any]) -> bool:
    return "grounded" in body["format"]["properties"]


def settings_for(tmp_path: Path, sample_kb: Settings, url: str, **planner: Any) -> Settings:
    """The shared sample knowledge base, planned by an Ollama model at ``url``."""
    return Settings(
        data_dir=sample_kb.data_dir,
        planner={"kind": "llm", **planner},
        llm={"backend": "ollama"},
        ollama={"host": url, "model": "llama3.1:8b", "timeout_s": 5},
        _env_file=None,
    )


async def ask(settings: Settings) -> Any:
    async with open_knowledge(settings) as kb:
        answer, _ = await kb.service.answer(QUESTION)
    return answer


def replies(*outputs: str | Callable[[dict[str, Any]], str]) -> Callable[[dict[str, Any]], str]:
    queue = list(outputs)
    return lambda body: (lambda o: o(body) if callable(o) else o)(queue.pop(0) if len(queue) > 1 else queue[0])


async def test_a_valid_workflow_is_answered_with_its_citations(tmp_path: Path, sample_kb: Settings) -> None:
    async with fake_ollama(replies(json.dumps(workflow()))) as server:
        answer = await ask(settings_for(tmp_path, sample_kb, server.url))
    assert (answer.abstained, answer.planner, answer.model) == (False, "llm", "ollama:llama3.1:8b")
    assert [s.type for s in answer.workflow.steps] == ["process", "decision", "terminal", "terminal"]
    assert {c.doc_id for c in answer.sources} == {"database/PostgresTooManyConnections.md"}
    ((path, body),) = server.requests
    assert path == "/api/chat"
    assert body["format"]["required"] == ["title", "steps"]
    prompt = body["messages"][1]["content"]
    assert prompt.startswith(f"Question: {QUESTION}") and "[1] database/PostgresTooManyConnections.md" in prompt


async def test_an_invalid_workflow_gets_one_repair(tmp_path: Path, sample_kb: Settings) -> None:
    async with fake_ollama(replies(json.dumps(workflow(broken=True)), json.dumps(workflow()))) as server:
        answer = await ask(settings_for(tmp_path, sample_kb, server.url))
    assert answer.planner == "llm" and not answer.abstained
    repair = server.requests[1][1]["messages"]
    assert repair[-2]["role"] == "assistant" and "s2 leads to unknown step s9" in repair[-1]["content"]


async def test_a_workflow_still_invalid_falls_back_to_the_extractive_planner(
    tmp_path: Path, sample_kb: Settings
) -> None:
    async with fake_ollama(replies(json.dumps(workflow(cite=99)))) as server:
        answer = await ask(settings_for(tmp_path, sample_kb, server.url))
    assert len(server.requests) == 2
    assert answer.planner == "extractive (fallback)" and not answer.abstained
    assert "cites no source" in answer.reason and "showing the extractive workflow" in answer.reason


async def test_an_unreachable_model_falls_back_and_says_so(tmp_path: Path, sample_kb: Settings) -> None:
    answer = await ask(settings_for(tmp_path, sample_kb, "http://127.0.0.1:9"))
    assert answer.planner == "extractive (fallback)" and answer.workflow is not None
    assert "unavailable" in answer.reason and any("127.0.0.1:9" in d for d in answer.degraded)


def scoring(rating_for_first: int, rating_for_second: int) -> Callable[[dict[str, Any]], str]:
    seen: list[int] = []

    def reply(body: dict[str, Any]) -> str:
        if not is_scoring(body):
            steps = workflow()
            steps["title"] = f"candidate {len([b for b in seen if b < 0]) + 1}"
            seen.append(-1)
            return json.dumps(steps)
        rating = rating_for_first if seen.count(1) == 0 else rating_for_second
        seen.append(1)
        return json.dumps({**dict.fromkeys(["grounded", "complete", "ordered", "actionable", "safe"], rating),
                           "reasons": ["misses the pooler check"] if rating < 3 else []})  # fmt: skip

    return reply


async def test_the_scorer_picks_the_best_of_n(tmp_path: Path, sample_kb: Settings) -> None:
    async with fake_ollama(scoring(2, 5)) as server:
        answer = await ask(settings_for(tmp_path, sample_kb, server.url, samples=2))
    assert answer.workflow.title == "candidate 2" and answer.confidence == 1.0
    assert sum(is_scoring(b) for _, b in server.requests) == 2


async def test_a_low_score_abstains_with_the_scorers_reasons(tmp_path: Path, sample_kb: Settings) -> None:
    async with fake_ollama(scoring(2, 2)) as server:
        answer = await ask(settings_for(tmp_path, sample_kb, server.url, samples=2, min_score=0.5))
    assert answer.abstained and "0.25 < 0.50" in answer.reason and "misses the pooler check" in answer.reason
    assert server.requests


@pytest.mark.parametrize("richness", [0.25, 1.0])
def test_context_richness_controls_what_the_prompt_shows(richness: float) -> None:
    from core.types import Chunk, Passage, Retrieval
    from generation.prompts import planner_messages

    passages = tuple(
        Passage(chunk=Chunk(chunk_id=f"a#{i}", doc_id="a", ordinal=i, title="A", text=f"text {i}"), score=1)
        for i in range(8)
    )
    prompt = planner_messages(Retrieval(query="q", passages=passages), richness)[1]["content"]
    assert prompt.count("\n[") + prompt.startswith("[") == round(8 * richness)


def test_prompts_stay_within_budget_and_lead_with_the_leading_runbook() -> None:
    from core.types import Chunk, Passage, Retrieval
    from generation.prompts import MAX_SOURCES, approx_tokens, planner_messages, select_context

    def passage(doc: str, i: int) -> Passage:
        text = "word " * 400
        return Passage(chunk=Chunk(chunk_id=f"{doc}#{i}", doc_id=doc, ordinal=i, title=doc, text=text), score=1)

    passages = (passage("lead", 3), *(passage(f"other{i}", 0) for i in range(25)), passage("lead", 1))
    context = select_context(Retrieval(query="q", passages=passages), 1.0)
    assert [p.chunk.chunk_id for p in context.passages[:3]] == ["lead#1", "lead#3", "other0#0"]
    assert len(context.passages) == MAX_SOURCES
    prompt = planner_messages(Retrieval(query="q", passages=passages))[1]["content"]
    assert approx_tokens(prompt) < 2500
