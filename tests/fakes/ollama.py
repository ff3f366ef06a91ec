"""A loopback Ollama server speaking the documented HTTP API (/api/chat, /api/embed, /api/tags,
/api/show, /api/blobs, /api/create).

Replies come from a function of the request body; every request but /api/show is recorded as sent; ``create`` adds a
model (from a known model and uploaded adapter blobs) that chat then serves. Used only where the
real process boundary (an Ollama server) cannot exist on these machines.

Windows behave as Ollama's do, with one whitespace-separated word counted as one token: a chat runs in
``options.num_ctx`` tokens (at most the model's context length, which ``/api/show`` reports), or in
Ollama's default 2,048 without it. A longer prompt loses its *start*, system prompt first, with only a
logged warning: the reply function sees the truncated messages. A reply is cut at
``options.num_predict`` tokens.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes import loopback

ChatReply = Callable[[dict[str, Any]], str]

DEFAULT_NUM_CTX = 2048  # Ollama before v0.15.5
log = logging.getLogger(__name__)
_TOKEN = re.compile(r"\S+\s*")  # a word and the space after it: the fake's token


@dataclass
class FakeOllama:
    url: str
    models: set[str]
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    blobs: set[str] = field(default_factory=set)
    created: list[dict[str, Any]] = field(default_factory=list)
    context_length: int = 8192
    shown: list[str] = field(default_factory=list)  # models asked of /api/show (not in requests)
    truncated: list[tuple[int, int]] = field(default_factory=list)  # (prompt tokens, window) of cut prompts


def truncate(messages: list[dict[str, Any]], window: int) -> list[dict[str, Any]]:
    """The last ``window`` tokens of the messages' contents, as messages: earlier ones dropped whole,
    the first one kept losing its start."""
    kept: list[dict[str, Any]] = []
    for message in reversed(messages):
        tokens = _TOKEN.findall(message.get("content", ""))
        if window <= 0:
            break
        kept.append({**message, "content": "".join(tokens[-window:])})
        window -= len(tokens)
    return kept[::-1]


def cut_reply(text: str, num_predict: int | None) -> str:
    return text if num_predict is None or num_predict < 0 else "".join(_TOKEN.findall(text)[:num_predict])


@asynccontextmanager
async def fake_ollama(
    reply: ChatReply, models: tuple[str, ...] = ("llama3.1:8b",), dim: int = 2, context_length: int = 8192
) -> AsyncIterator[FakeOllama]:
    """Serve on 127.0.0.1:<free port>; unknown models get Ollama's 404 ``model not found``; every model
    has ``context_length`` tokens of context."""
    state = FakeOllama(url="", models=set(models), context_length=context_length)

    def not_found(body: dict[str, Any]) -> web.Response:
        return web.json_response({"error": f"model '{body.get('model')}' not found"}, status=404)

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        state.requests.append(("/api/chat", body))
        if body.get("model") not in state.models:
            return not_found(body)
        options = body.get("options") or {}
        window = min(options.get("num_ctx") or DEFAULT_NUM_CTX, state.context_length)
        prompt = sum(len(_TOKEN.findall(m.get("content", ""))) for m in body["messages"])
        if prompt > window:
            log.warning("truncating input prompt limit=%d prompt=%d", window, prompt)
            state.truncated.append((prompt, window))
            body = {**body, "messages": truncate(body["messages"], window)}
        content = cut_reply(reply(body), options.get("num_predict"))
        return web.json_response(
            {
                "model": body["model"],
                "created_at": "2026-11-22T00:00:00Z",
                "message": {"role": "assistant", "content": content},
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": min(prompt, window),
                "eval_count": len(_TOKEN.findall(content)),
            }
        )

    async def show(request: web.Request) -> web.Response:
        body = await request.json()
        state.shown.append(body.get("model", ""))
        if body.get("model") not in state.models:
            return not_found(body)
        info = {"general.architecture": "llama", "llama.context_length": state.context_length}
        return web.json_response({"model_info": info, "details": {"family": "llama"}, "capabilities": ["completion"]})

    async def embed(request: web.Request) -> web.Response:
        body = await request.json()
        state.requests.append(("/api/embed", body))
        if body.get("model") not in state.models:
            return not_found(body)
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
    app.router.add_post("/api/show", show)
    app.router.add_post("/api/blobs/{digest}", blob)
    app.router.add_post("/api/create", create)
    async with loopback(app) as state.url:
        yield state


def schema_following(text: str) -> ChatReply:
    """A model held to ``format``: the smallest instance of a JSON-schema ``format``, else ``text``."""
    return lambda body: json.dumps(smallest_instance(body["format"])) if body.get("format") else text


def smallest_instance(schema: dict[str, Any]) -> Any:
    """The smallest value of a JSON schema's types: required properties only, no items, minimal strings."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) else kind
    match kind:
        case "object":
            return {
                k: smallest_instance(v)
                for k, v in schema.get("properties", {}).items()
                if k in schema.get("required", ())
            }
        case "array":
            return [smallest_instance(schema["items"]) for _ in range(schema.get("minItems", 0))]
        case "string":
            return "x" * max(schema.get("minLength", 0), 1)
        case "integer" | "number":
            return schema.get("minimum", 0)
        case "boolean":
            return False
        case _:
            return None


def json_reply(value: Any) -> ChatReply:
    return lambda _body: json.dumps(value)
