"""A loopback Slack Web API: the methods opsflow calls, answered as Slack documents them, and recorded.

Methods take form-encoded or JSON bodies (slack_sdk sends block-carrying calls as JSON). Messages get
increasing ``ts`` values; Socket Mode connects to ``/api/socket`` and receives what
``send_over_socket`` queues; ``rate_limit(method, times)`` makes the next calls answer 429 with
``Retry-After`` like Slack's tiers do; ``refuse_posts(channel, error)`` makes chat.postMessage there
answer as Slack does where the bot may not post (``not_in_channel``, ``channel_not_found``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes import loopback


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    at: float


@dataclass
class FakeSlack:
    """The server's state: every call received, and the messages as they are now."""

    url: str = ""
    bot_user: str = "UBOT"
    calls: list[Call] = field(default_factory=list)
    messages: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    user_groups: dict[str, list[str]] = field(default_factory=dict)
    _limited: dict[str, int] = field(default_factory=dict)
    _refused: dict[str, str] = field(default_factory=dict)
    socket_acks: list[str] = field(default_factory=list)
    _envelopes: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _changed: asyncio.Condition | None = None

    def send_over_socket(self, envelope_type: str, payload: dict[str, Any], envelope_id: str) -> None:
        """Queue a Socket Mode envelope for the connected app (it is sent once the app connects)."""
        self._envelopes.put_nowait({"envelope_id": envelope_id, "type": envelope_type, "payload": payload})

    def rate_limit(self, method: str, times: int = 1) -> None:
        self._limited[method] = times

    def refuse_posts(self, channel: str, error: str) -> None:
        self._refused[channel] = error

    def of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def wait_for(self, method: str, count: int = 1, within: float = 30.0, **match: Any) -> list[Call]:
        """Wait until ``count`` calls of ``method`` (whose args include ``match``) have arrived."""
        assert self._changed is not None

        def found() -> list[Call]:
            return [c for c in self.of(method) if all(c.args.get(k) == v for k, v in match.items())]

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(found()) >= count), within)
        return found()

    async def _record(self, method: str, args: dict[str, Any]) -> None:
        assert self._changed is not None
        async with self._changed:
            self.calls.append(Call(method, args, time.monotonic()))
            self._changed.notify_all()

    def _answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        match method:
            case "auth.test":
                return {"ok": True, "user_id": self.bot_user, "bot_id": "BBOT", "team_id": "T1", "user": "opsflow"}
            case "chat.postMessage" if args.get("channel", "") in self._refused:
                return {"ok": False, "error": self._refused[args.get("channel", "")]}
            case "chat.postMessage":
                ts = f"{1_700_000_000 + next(self._ts)}.000100"
                channel = args.get("channel", "")
                self.messages[(channel, ts)] = dict(args)
                return {"ok": True, "channel": channel, "ts": ts, "message": {"ts": ts, "text": args.get("text")}}
            case "chat.update":
                key = (args.get("channel", ""), args.get("ts", ""))
                if key not in self.messages:
                    return {"ok": False, "error": "message_not_found"}
                self.messages[key] |= args
                return {"ok": True, "channel": key[0], "ts": key[1]}
            case "conversations.history":
                # A channel's top-level messages, newest first, in one page. ``oldest`` is not applied:
                # this fake's ts count up from 2023, not from the clock.
                channel = args.get("channel", "")
                found = [
                    {"type": "message", "ts": ts, "text": m.get("text", ""), "blocks": _decoded_list(m.get("blocks"))}
                    for (c, ts), m in self.messages.items()
                    if c == channel and not m.get("thread_ts")
                ]
                return {"ok": True, "messages": sorted(found, key=lambda m: float(m["ts"]), reverse=True)}
            case "chat.postEphemeral":
                return {"ok": True, "message_ts": f"{1_700_000_000 + next(self._ts)}.000200"}
            case "views.open" | "views.update" | "views.push":
                return {"ok": True, "view": {"id": "V1", **_decoded(args.get("view"))}}
            case "usergroups.users.list":
                return {"ok": True, "users": self.user_groups.get(args.get("usergroup", ""), [])}
            case "files.getUploadURLExternal":
                return {"ok": True, "upload_url": f"{self.url}upload/F{next(self._ts)}", "file_id": "F1"}
            case "files.completeUploadExternal":
                return {"ok": True, "files": [{"id": "F1", "title": "workflow"}]}
            case "apps.connections.open":
                return {"ok": True, "url": self.url.replace("http://", "ws://") + "socket"}
            case _:
                return {"ok": False, "error": "unknown_method"}


def _decoded_list(value: Any) -> list[Any]:
    return list(json.loads(value)) if isinstance(value, str) else list(value or [])


def _decoded(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return dict(json.loads(value))
    return dict(value or {})


@asynccontextmanager
async def fake_slack() -> AsyncIterator[FakeSlack]:
    """Serve a FakeSlack on 127.0.0.1; its ``url`` is the Web API base (with the trailing slash)."""
    slack = FakeSlack(_changed=asyncio.Condition())

    async def api(request: web.Request) -> web.Response:
        method = request.match_info["method"]
        json_body = request.content_type == "application/json"
        args = dict(await request.json()) if json_body else dict(await request.post())
        args = {k: v for k, v in {**request.query, **args}.items() if k != "token"}  # some methods use the query
        await slack._record(method, args)
        if slack._limited.get(method, 0) > 0:
            slack._limited[method] -= 1
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": "1"})
        return web.json_response(slack._answer(method, args))

    async def upload(request: web.Request) -> web.Response:
        await slack._record("upload", {"bytes": len(await request.read())})
        return web.Response(text="OK")

    async def socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"type": "hello", "num_connections": 1})

        async def feed() -> None:
            while True:
                await ws.send_json(await slack._envelopes.get())

        feeding = asyncio.create_task(feed())
        try:
            async for message in ws:
                ack = json.loads(message.data)
                slack.socket_acks.append(ack["envelope_id"])
                await slack._record("socket.ack", ack)
        finally:
            feeding.cancel()
        return ws

    app = web.Application(client_max_size=20 * 1024 * 1024)
    app.router.add_get("/api/socket", socket)
    app.router.add_post("/api/{method}", api)
    app.router.add_get("/api/{method}", api)  # slack_sdk reads conversations.history with GET
    app.router.add_post("/api/upload/{file}", upload)
    async with loopback(app) as url:
        slack.url = f"{url}/api/"
        yield slack
