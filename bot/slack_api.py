"""Slack's Web API as the bot uses it: one client, new messages paced per channel, and the three ways
to show something — a message (``post``), an edit (``update``) and a slash command's ``response_url``.

Refusals are values, not exceptions: ``post`` says why Slack refused (``not_in_channel``,
``channel_not_found``…) so a caller can answer another way; every refusal is logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.metrics import Metrics
from core.settings import SlackSettings

log = logging.getLogger(__name__)

CANNOT_POST = {"not_in_channel", "channel_not_found", "is_archived", "restricted_action", "cannot_dm_bot"}
"""chat.postMessage errors that mean the bot may not post here at all (retrying will not help)."""


def escaped(text: str) -> str:
    """An outside string (a runbook's, an alert's, a tool's output, an error) made inert in Slack mrkdwn:
    ``&``, ``<`` and ``>`` escaped, so it can neither link nor mention (``<!here>``, ``<@U…>``)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def web_client(cfg: SlackSettings) -> AsyncWebClient:
    """The Web API client: Slack's 429s are waited out (Retry-After), connection and 5xx errors retried."""
    token = cfg.bot_token.get_secret_value() if cfg.bot_token else None
    handlers = [
        AsyncConnectionErrorRetryHandler(max_retry_count=2),
        AsyncRateLimitErrorRetryHandler(max_retry_count=5),
        AsyncServerErrorRetryHandler(max_retry_count=2),
    ]
    return AsyncWebClient(token=token, base_url=cfg.api_url, retry_handlers=handlers, timeout=30)


class ChannelPacer:
    """New messages per channel held to Slack's chat.postMessage limit: about one a second, with short
    bursts allowed (a token bucket of ``burst`` messages refilled at ``rate`` a second)."""

    def __init__(self, rate: float = 1.0, burst: int = 3) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens: dict[str, tuple[float, float]] = {}  # channel -> (tokens, when counted)
        self._locks: dict[str, asyncio.Lock] = {}

    async def wait(self, channel: str) -> None:
        async with self._locks.setdefault(channel, asyncio.Lock()):
            now = time.monotonic()
            tokens, then = self._tokens.get(channel, (float(self._burst), now))
            tokens = min(float(self._burst), tokens + (now - then) * self._rate)
            if tokens < 1:
                await asyncio.sleep((1 - tokens) / self._rate)
                now, tokens = time.monotonic(), 1.0
            self._tokens[channel] = (tokens - 1, now)


@dataclass(frozen=True)
class Posted:
    """What became of a new message: its ``ts``, or Slack's ``error`` code when it was refused."""

    ts: str | None
    error: str = ""


class SlackApi:
    """The Web API calls of the bot, each logged and counted when Slack refuses it."""

    def __init__(self, client: AsyncWebClient, metrics: Metrics) -> None:
        self.client = client
        self._metrics = metrics
        self._pacer = ChannelPacer()

    async def send(
        self, channel: str, thread_ts: str | None, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> Posted:
        """Post a message (paced per channel); its ts, or why Slack refused it."""
        await self._pacer.wait(channel)
        try:
            reply = await self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=text, blocks=blocks)
        except SlackApiError as exc:
            return Posted(None, self._api_error("chat.postMessage", exc))
        return Posted(str(reply["ts"]))

    async def post(
        self, channel: str, thread_ts: str | None, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> str | None:
        """Post a message (paced per channel); its ts, or None when Slack refused it."""
        return (await self.send(channel, thread_ts, text, blocks)).ts

    async def update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]] | None = None) -> bool:
        """Replace the text and blocks of the message ``ts``; False when Slack refused."""
        try:
            await self.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks or [])
        except SlackApiError as exc:
            self._api_error("chat.update", exc)
            return False
        return True

    async def ephemeral(self, channel: str, user: str, text: str) -> bool:
        """A message only ``user`` sees in ``channel``; False when Slack refused."""
        try:
            await self.client.chat_postEphemeral(channel=channel, user=user, text=text)
        except SlackApiError as exc:
            self._api_error("chat.postEphemeral", exc)
            return False
        return True

    async def open_view(self, trigger_id: str, view: dict[str, Any]) -> bool:
        """Open a modal for the click ``trigger_id`` (valid 3 s); False when Slack refused."""
        try:
            await self.client.views_open(trigger_id=trigger_id, view=view)
        except SlackApiError as exc:
            self._api_error("views.open", exc)
            return False
        return True

    async def group_members(self, group: str) -> list[str]:
        """The user ids in the user group ``group`` (S…); empty when Slack refused."""
        try:
            reply = await self.client.usergroups_users_list(usergroup=group)
        except SlackApiError as exc:
            self._api_error("usergroups.users.list", exc)
            return []
        return list(reply.get("users") or [])

    async def respond(
        self, response_url: str, text: str, blocks: list[dict[str, Any]] | None = None, *, replace: bool = False
    ) -> bool:
        """Show ``text`` to the person who ran a slash command, through its ``response_url`` (valid 30 min,
        5 uses; works where the bot may not post). ``replace`` edits the earlier response."""
        webhook = AsyncWebhookClient(response_url, timeout=10)
        try:
            reply = await webhook.send(
                text=text, blocks=blocks, response_type="ephemeral", replace_original=replace or None
            )
        except (OSError, TimeoutError) as exc:
            log.warning("response_url unreachable", extra={"error": str(exc)})
            self._metrics.slack_errors.labels(method="response_url", error="unreachable").inc()
            return False
        if reply.status_code != 200:
            self._metrics.slack_errors.labels(method="response_url", error=str(reply.status_code)).inc()
            log.warning("response_url refused", extra={"status": reply.status_code, "body": reply.body[:200]})
        return reply.status_code == 200

    def _api_error(self, method: str, exc: SlackApiError) -> str:
        error = str(exc.response.get("error", "unknown")) if exc.response is not None else "unknown"
        self._metrics.slack_errors.labels(method=method, error=error).inc()
        log.warning("slack api error", extra={"method": method, "error": error})
        return error
