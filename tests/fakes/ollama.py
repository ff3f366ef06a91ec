"""A loopback Ollama server speaking the documented HTTP API (/api/chat, /api/embed, /api/tags,
/api/blobs, /api/create).

Replies come from a function of the request body; every request is recorded; ``create`` adds a model
(from a known model and uploaded adapter blobs) that chat then serves. Used only where the
real process boundary (an Ollama server) cannot exist on these machines.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes import loopback

ChatReply = Callable[[dict[str, Any]], str]


@dataclass
class FakeOllama:
    url: str
    models: set[str]
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    blobs: set[str] = field(default_factory=set)
    created: list[dict[str, Any]] = field(default_factory=list)


@asynccontextmanager
async def fake_ollama(
    reply: ChatReply, models: tuple[str, ...] = ("llama3.1:8b",), dim: int = 2
) -> AsyncIterator[FakeOllama]:
    """Serve on 127.0.0.1:<free port>; unknown models get Ollama's 404 ``model not found``."""
    state = FakeOllama(url="", models=set(models))

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        state.requests.append(("/api/chat", body))
        if body.get("model") not in state.models:
            return web.json_response({"error": f"model '{body.get('model')}' not found"}, status=404)
        return web.json_response(
            {
                "model": body["model"],
                "created_at": "2026-11-22T00:00:00Z",
                "message": {"role": "assistant", "content": reply(body)},
                "done": True,
                "done_reason": "stop",
                "eval_count": 10,
            }
        )

    async def embed(request: web.Request) -> web.Response:
        body = await request.json()
        state.requests.append(("/api/embed", body))
        if body.get("model") not in state.models:
            return web.json_response({"error": f"model '{body.get('model')}' not found"}, status=404)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        # A deterministic vector per text: its length and letter counts, so equal texts embed equally.
        vectors = [[len(t) % 7 + 1.0, *(float(t.count(c)) for c in "etaoinsrhl"[: dim - 1])] for t in inputs]
        return web.json_response({"model": body["model"], "embeddings": vectors})

    async def tags(request: web.Request) -> web.Response:
        state.requests.append(("/api/tags", {}))
        return web.json_response({"models": [{"name": m, "model": m} for m in sorted(state.models)]})

    async def blob(request: web.Request) -> web.Response:
        data = await request.read()
        assert data[:4] == b"GGUF", "adapters are uploaded as GGUF files"
        state.blobs.add(request.match_info["digest"])
        return web.Response(status=201)

    async def create(request: web.Request) -> web.Response:
        body = await request.json()
        state.created.append(body)
        if body.get("from") not in state.models or not set(body.get("adapters", {}).values()) <= state.blobs:
            return web.json_response({"error": "unknown base model or adapter blob"}, status=400)
        state.models.add(body["model"])
        return web.json_response({"status": "success"})

    app = web.Application(client_max_size=256 * 2**20)  # adapter blobs
    app.router.add_post("/api/chat", chat)
    app.router.add_post("/api/embed", embed)
    app.router.add_get("/api/tags", tags)
    app.router.add_post("/api/blobs/{digest}", blob)
    app.router.add_post("/api/create", create)
    async with loopback(app) as state.url:
        yield state


def json_reply(value: Any) -> ChatReply:
    return lambda _body: json.dumps(value)
