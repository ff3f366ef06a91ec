"""Running the real bot for tests: the server on a loopback port, Slack's Web API faked on another.

``running_bot`` serves ``bot.app.build_bot`` over the sample knowledge base with a record store of its
own; ``SlackClient`` sends requests signed the way Slack signs them.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from slack_sdk.signature import SignatureVerifier

from bot.app import Bot, build_bot, open_knowledge
from bot.server import running
from core.settings import Settings
from tests.fakes.slack import FakeSlack, fake_slack

SECRET = "test-signing-secret"
BOT_TOKEN = "xoxb-test-token"
ALERT_TOKEN = "alert-token"


@dataclass
class SlackClient:
    """Sends Slack's requests to the bot, signed with ``secret`` at ``age`` seconds in the past."""

    url: str
    session: aiohttp.ClientSession
    slack_url: str
    secret: str = SECRET

    async def send(self, body: str, content_type: str, *, age: float = 0, **headers: str) -> aiohttp.ClientResponse:
        ts = str(int(time.time() - age))
        signature = SignatureVerifier(self.secret).generate_signature(timestamp=ts, body=body)
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature,
            **headers,
        }
        return await self.session.post(f"{self.url}/slack/events", data=body.encode(), headers=headers)

    async def event(self, event: dict[str, Any], event_id: str, **headers: str) -> aiohttp.ClientResponse:
        body = {
            "token": "verification-token",
            "team_id": "T1",
            "api_app_id": "A1",
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
            "event": event,
            "authorizations": [{"team_id": "T1", "user_id": "UBOT", "is_bot": True}],
        }
        return await self.send(json.dumps(body), "application/json", **headers)

    async def interaction(self, payload: dict[str, Any]) -> aiohttp.ClientResponse:
        payload = {"team": {"id": "T1"}, "api_app_id": "A1", "token": "verification-token", **payload}
        body = urllib.parse.urlencode({"payload": json.dumps(payload)})
        return await self.send(body, "application/x-www-form-urlencoded")

    async def command(self, text: str, user: str, channel: str = "C1") -> aiohttp.ClientResponse:
        form = {
            "command": "/opsflow",
            "text": text,
            "user_id": user,
            "channel_id": channel,
            "team_id": "T1",
            "trigger_id": "trig",
            "response_url": f"{self.slack_url}response_url",  # the fake records what is posted there
        }
        return await self.send(urllib.parse.urlencode(form), "application/x-www-form-urlencoded")


@dataclass
class RunningBot:
    url: str
    bot: Bot
    slack: FakeSlack
    client: SlackClient
    http: aiohttp.ClientSession


def bot_settings(kb: Settings, records: Path, slack_url: str, **sections: dict[str, Any]) -> Settings:
    """The sample knowledge base's settings with Slack, alerts and a record store of the test's own;
    ``sections`` add to (or override) fields of a settings section, e.g. ``slack={"channels": ("C1",)}``."""
    values: dict[str, Any] = {
        "data_dir": kb.data_dir,
        "records": {"url": f"sqlite:///{records}"},
        "slack": {"bot_token": BOT_TOKEN, "signing_secret": SECRET, "api_url": slack_url, "admins": ("UADMIN",)},
        "alerts": {"token": ALERT_TOKEN, "default_channel": "CALERTS"},
    }
    for name, fields in sections.items():
        values[name] = {**values.get(name, {}), **fields}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@asynccontextmanager
async def running_bot(kb: Settings, records: Path, **sections: dict[str, Any]) -> AsyncIterator[RunningBot]:
    """The bot served on 127.0.0.1 with a fake Slack Web API; both stop when the block exits."""
    async with fake_slack() as slack:
        settings = bot_settings(kb, records, slack.url, **sections)
        async with open_knowledge(settings) as knowledge:
            bot = await asyncio.to_thread(build_bot, settings, knowledge)  # Bolt reads files as it starts
            async with running(bot, "127.0.0.1", 0) as url, aiohttp.ClientSession() as http:
                yield RunningBot(url, bot, slack, SlackClient(url, http, slack.url), http)
