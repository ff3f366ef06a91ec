"""The Slack app: Bolt's wiring from Slack's payloads to the thread service and the feedback listeners.

Events are acknowledged before their listener runs (Bolt does that); commands call ``ack()`` first.
Before the ack, in middleware, so nothing a person gave is lost once Slack has its 200: a quick retry
is recognised by its event id in memory, a question is written to the inbox (``bot.inbox``) once per
*message* (team, channel, ts) — a retry, an edit of the message (Slack sends it again as a new event)
and the other replica all find it there — and a reaction vote is written. The answer runs after.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bot.feedback import FeedbackListeners
from bot.inbox import Inbox, question_key
from bot.metrics import Metrics
from bot.records import BotRecords
from bot.slack_api import escaped
from bot.threads import HELP, ThreadService
from core.errors import OpsflowError
from core.settings import SlackSettings

log = logging.getLogger(__name__)

_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")

AdminCommand = Callable[[str, str], Awaitable[str]]
"""An admin subcommand: (its arguments, the admin's user id) → the reply to show."""


class RecentIds:
    """The last ``size`` ids seen, in memory: answers Slack's quick retries without touching the store."""

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def first(self, event_id: str) -> bool:
        if event_id in self._ids:
            return False
        self._ids[event_id] = None
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)
        return True


class SlackBot:
    """The Bolt app (``app``, to serve over HTTP or Socket Mode) around the thread service."""

    def __init__(
        self,
        cfg: SlackSettings,
        threads: ThreadService,
        feedback: FeedbackListeners,
        records: BotRecords,
        metrics: Metrics,
        *,
        admin_commands: Mapping[str, AdminCommand] | None = None,
        status: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        self.cfg = cfg
        self.threads = threads
        self._feedback = feedback
        self._records = records
        self._metrics = metrics
        self._admin_commands = dict(admin_commands or {})
        self._status = status
        self._recent = RecentIds()
        self.inbox = Inbox(records, stale_s=cfg.answer_timeout_s + 60)
        secret = cfg.signing_secret.get_secret_value() if cfg.signing_secret else None
        self.app = AsyncApp(
            client=threads.api.client,
            signing_secret=secret,
            # Socket Mode is authenticated by its connection; HTTP requests must be signed.
            request_verification_enabled=cfg.app_token is None,
            raise_error_for_unhandled_request=False,
        )
        app = self.app
        app.middleware(self._deduplicate)
        app.middleware(self._take_up)
        app.middleware(self._record_reactions)
        app.event("app_mention")(self._on_mention)
        app.event("message")(self._on_message)
        app.event("reaction_added")(self._ignore)  # voted in middleware, before the ack
        app.event("reaction_removed")(self._ignore)
        app.command("/opsflow")(self._on_command)
        app.error(self._on_error)
        feedback.register(app)

    async def _deduplicate(
        self, req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse | None:
        event_id = req.body.get("event_id") if isinstance(req.body, dict) else None
        kind = req.body.get("type", "") if isinstance(req.body, dict) else ""
        self._metrics.slack_events.labels(kind=str(kind or req.context.get("command") or "interaction")).inc()
        if event_id and not self._recent.first(str(event_id)):
            self._metrics.slack_duplicates.inc()
            log.info("slack retry ignored", extra={"event_id": event_id, "retry": req.headers.get("x-slack-retry-num")})
            return BoltResponse(status=200, body="")  # a new response: ``resp`` may be None here
        return await next()

    async def _take_up(
        self, req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse | None:
        """A question is written to the inbox before the ack; one another delivery took up is not answered."""
        key = question_key(req.body) if isinstance(req.body, dict) else None
        if key is None:
            return await next()
        try:
            first = await self.inbox.take_up(key, req.body["event"])
        except OpsflowError as exc:  # not acknowledged: Slack sends it again (to this or another replica)
            log.error("question not written to the inbox", extra={"key": key, "error": str(exc)})
            return BoltResponse(status=503, body="")
        if not first:
            self._metrics.slack_duplicates.inc()
            log.info("message already taken up", extra={"key": key, "edited": "edited" in req.body["event"]})
            return BoltResponse(status=200, body="")
        return await next()

    async def _record_reactions(
        self, req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse | None:
        event = req.body.get("event") if isinstance(req.body, dict) else None
        if isinstance(event, dict) and event.get("type") in ("reaction_added", "reaction_removed"):
            await self._feedback.vote_by_reaction(event)
        return await next()

    async def _ignore(self) -> None:
        return None

    async def _on_error(self, error: Exception, body: dict[str, Any]) -> None:
        """The catch-all of the Slack side: logged; a command's asker is told in a short note."""
        log.error("slack listener failed", exc_info=error, extra={"type": body.get("type")})
        if url := body.get("response_url"):
            why = str(error) if isinstance(error, OpsflowError) else "an internal error; it is logged"
            await self.threads.api.respond(str(url), f":warning: That did not work: {escaped(why)}.")

    def allowed(self, channel: str) -> bool:
        return not self.cfg.channels or channel in self.cfg.channels or channel.startswith("D")

    async def _on_mention(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        await self.answer(question_key(body) or "", event)

    async def _on_message(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        # Only a person's direct message: channel messages come as app_mention when they name the bot.
        key = question_key(body)
        if key is None:
            if event.get("channel_type") == "im":
                log.info("not a person's message; ignored", extra={"subtype": event.get("subtype") or "bot_message"})
            return
        await self.answer(key, event)

    async def answer(self, key: str, event: dict[str, Any]) -> None:
        """Answer a question taken up from the inbox (``key``), then mark it answered there."""
        channel = event.get("channel", "")
        await self.inbox.settled()
        if event.get("type") == "app_mention" and not self.allowed(channel):
            await self.threads.api.ephemeral(channel, event.get("user", ""), "I'm not enabled here; ask an admin.")
        else:
            await self._ask(event)
        await self.inbox.answered(key)

    async def _ask(self, event: dict[str, Any]) -> None:
        question = _MENTION.sub("", event.get("text", "")).strip()
        thread = event.get("thread_ts") or event.get("ts", "")
        await self.threads.ask(question, channel=event.get("channel", ""), thread_ts=thread, user=event.get("user", ""))

    async def _on_command(self, ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
        sub, _, rest = (command.get("text") or "").strip().partition(" ")
        sub, rest, user = sub.lower(), rest.strip(), command.get("user_id", "")
        if sub in ("", "help"):
            await ack(text=HELP)
        elif sub == "ask":
            await ack(text=f"Looking into: _{escaped(rest)}_" if rest else "Ask me: `/opsflow ask <question>`")
            if rest:
                channel, url = command.get("channel_id", ""), command.get("response_url")
                await self.threads.ask(rest, channel=channel, thread_ts=None, user=user, response_url=url)
        elif sub == "status":
            await ack()
            await respond(text=await self._status() if self._status else "opsflow is running.")
        elif sub in self._admin_commands:
            await self._admin(ack, respond, sub, rest, user)
        else:
            await ack(text=f"I don't know `{escaped(sub)}`.\n{HELP}")

    async def _admin(self, ack: AsyncAck, respond: AsyncRespond, sub: str, rest: str, user: str) -> None:
        if not await self.is_admin(user):
            await ack(text=f"Sorry, `/opsflow {sub}` is for opsflow admins only. Ask one of them for help.")
            return
        await ack(text=f"Working on `/opsflow {sub} {rest}`…")
        await self._records.audit(user, f"slack:{sub}", {"args": rest})
        try:
            reply = await self._admin_commands[sub](rest, user)
        except OpsflowError as exc:
            reply = f":warning: `{sub}` failed: {escaped(str(exc))}"
        await respond(text=reply)

    async def is_admin(self, user: str) -> bool:
        """A configured admin: listed by user id, or a member of a listed user group (S…)."""
        if user in self.cfg.admins:
            return True
        for group in (a for a in self.cfg.admins if a.startswith("S")):
            if user in await self.threads.api.group_members(group):
                return True
        return False
