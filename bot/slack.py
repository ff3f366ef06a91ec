"""The Slack app: questions in, workflow cards out, and every judgement people give them recorded.

Built on slack-bolt's AsyncApp. Events are acknowledged before their listener runs (Bolt does that);
commands, buttons and modals call ``ack()`` first and work after. Before the ack, in middleware: a
quick Slack retry is recognised by its event id in memory, and a reaction vote is written, so nothing a
person gave is lost once Slack has its 200. After it, a question's event id is also kept in the record
store, so a retry arriving after a restart is not answered twice.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.metrics import Metrics
from bot.service import Service
from core.errors import OpsflowError, PlanError
from core.settings import SlackSettings
from core.types import Answer, Retrieval, Workflow
from generation.editing import from_lines, to_lines
from generation.rendering import (
    EDIT_WORKFLOW,
    ESCALATE,
    FEEDBACK_DOWN,
    FEEDBACK_UP,
    FLAG_STEP,
    STEP_FLAGS,
    DocUrl,
    fallback_text,
    render_png,
    render_slack_blocks,
)
from trainer.store import Interaction, RecordStore

log = logging.getLogger(__name__)

PLACEHOLDER = ":mag: Looking into it…"
MAX_QUESTION = 4000  # characters; a pasted log is not a question, and retrieval reads only the start
DOWNVOTE_VIEW = "downvote_reason"
EDIT_VIEW = "edit_workflow"
_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")

AdminCommand = Callable[[str, str], Awaitable[str]]
"""An admin subcommand: (its arguments, the admin's user id) → the reply to show."""

HELP = """*opsflow* answers incidents with step-by-step workflows from your runbooks.
• `@opsflow <question>` in a channel or thread, or a DM — follow-ups in the thread keep its context
• `/opsflow ask <question>` — answer in this channel
• `/opsflow status` — what the bot knows and which models it uses
• react 👍 / 👎 on an answer, or use its buttons; *Edit* corrects the steps
Admins: `/opsflow ingest PATH` · `/opsflow train …` · `/opsflow schedule …` · `/opsflow models …`"""


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
    """Answers in Slack and records feedback; ``app`` is the Bolt app to serve (HTTP or Socket Mode)."""

    def __init__(
        self,
        cfg: SlackSettings,
        service: Service,
        records: RecordStore,
        metrics: Metrics,
        *,
        client: AsyncWebClient | None = None,
        doc_url: DocUrl | None = None,
        admin_commands: Mapping[str, AdminCommand] | None = None,
        status: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        self.cfg = cfg
        self.client = client or web_client(cfg)
        self._service = service
        self._records = records
        self._metrics = metrics
        self._doc_url = doc_url
        self._admin_commands = dict(admin_commands or {})
        self._status = status
        self._pacer = ChannelPacer()
        self._recent = RecentIds()
        self._inflight: set[asyncio.Task[Any]] = set()
        secret = cfg.signing_secret.get_secret_value() if cfg.signing_secret else None
        self.app = AsyncApp(
            client=self.client,
            signing_secret=secret,
            # Socket Mode is authenticated by its connection; HTTP requests must be signed.
            request_verification_enabled=cfg.app_token is None,
            raise_error_for_unhandled_request=False,
        )
        self._register()

    # -- wiring -----------------------------------------------------------------------------------

    def _register(self) -> None:
        app = self.app
        app.middleware(self._deduplicate)
        app.middleware(self._record_reactions)
        app.event("app_mention")(self._on_mention)
        app.event("message")(self._on_message)
        app.event("reaction_added")(self._ignore)  # voted in middleware, before the ack
        app.event("reaction_removed")(self._ignore)
        app.command("/opsflow")(self._on_command)
        app.action(FEEDBACK_UP)(self._on_vote_button)
        app.action(FEEDBACK_DOWN)(self._on_vote_button)
        app.action(EDIT_WORKFLOW)(self._on_edit_button)
        app.action(FLAG_STEP)(self._on_flag)
        app.action(ESCALATE)(self._on_escalate)
        app.view(DOWNVOTE_VIEW)(self._on_downvote_reason)
        app.view(EDIT_VIEW)(self._on_edit_submitted)

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

    async def _record_reactions(
        self, req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse | None:
        event = req.body.get("event") if isinstance(req.body, dict) else None
        if isinstance(event, dict) and event.get("type") in ("reaction_added", "reaction_removed"):
            await self._vote_by_reaction(event)
        return await next()

    async def _ignore(self) -> None:
        return None

    # -- asking -----------------------------------------------------------------------------------

    def allowed(self, channel: str) -> bool:
        return not self.cfg.channels or channel in self.cfg.channels or channel.startswith("D")

    async def _first_answer(self, body: dict[str, Any]) -> bool:
        """Whether this event was never answered, across restarts (checked after the ack: a store
        commit on the ack path would queue 50 concurrent mentions behind one another)."""
        event_id = body.get("event_id")
        if event_id and not await self._records.first_sighting(str(event_id)):
            self._metrics.slack_duplicates.inc()
            return False
        return True

    async def _on_mention(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        if not await self._first_answer(body):
            return
        channel = event.get("channel", "")
        if not self.allowed(channel):
            await self._ephemeral(channel, event.get("user", ""), "I'm not enabled in this channel; ask an admin.")
            return
        question = _MENTION.sub("", event.get("text", "")).strip()
        thread = event.get("thread_ts") or event.get("ts", "")
        await self.ask(question, channel=channel, thread_ts=thread, user=event.get("user", ""), origin="slack")

    async def _on_message(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        # Only direct messages from people: channel messages come as app_mention when they name the bot.
        if event.get("channel_type") != "im" or event.get("bot_id") or event.get("subtype"):
            return
        if not await self._first_answer(body):
            return
        question = _MENTION.sub("", event.get("text", "")).strip()
        thread = event.get("thread_ts") or event.get("ts", "")
        await self.ask(question, channel=event.get("channel", ""), thread_ts=thread, user=event.get("user", ""))

    async def ask(
        self,
        question: str,
        *,
        channel: str,
        thread_ts: str | None,
        user: str,
        origin: str = "slack",
        alert_group: str | None = None,
    ) -> Interaction | None:
        """Post a placeholder in the thread, answer, and replace it with the workflow card."""
        task = asyncio.current_task()
        if task is not None:  # tracked so a shutdown finishes the answer instead of cutting it
            self._inflight.add(task)
        try:
            return await self._ask(question, channel, thread_ts, user, origin, alert_group)
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def _ask(
        self, question: str, channel: str, thread_ts: str | None, user: str, origin: str, alert_group: str | None
    ) -> Interaction | None:
        started = time.perf_counter()
        if not question:
            await self.post(channel, thread_ts, HELP)
            return None
        if len(question) > MAX_QUESTION:
            await self.post(
                channel,
                thread_ts,
                f":warning: That message is {len(question):,} characters; ask in under {MAX_QUESTION:,} "
                "(describe the symptom or paste the alert name rather than whole logs).",
            )
            return None
        # A person who asked sees a placeholder at once; an alert's thread gets the card when it is ready
        # (one message instead of two under Slack's per-channel pace, when alerts arrive in bulk).
        placeholder = None
        if origin != "alert":
            placeholder = await self.post(channel, thread_ts, PLACEHOLDER)
            if placeholder is None:
                return None
        history = await self._records.thread_history(channel, thread_ts) if thread_ts else []
        # A follow-up is read together with the thread's first question (or alert): that names the incident.
        earlier = history[0].query if history else ""
        query = f"{question} ({earlier})" if earlier and earlier not in question else question
        try:
            answer, retrieval = await asyncio.wait_for(self._service.answer(query), timeout=self.cfg.answer_timeout_s)
        except (OpsflowError, TimeoutError) as exc:
            reason = str(exc) or f"no answer within {self.cfg.answer_timeout_s:.0f} s"
            log.warning("answer failed", extra={"channel": channel, "error": reason})
            self._metrics.answers.labels(origin=origin, outcome="failed").inc()
            note = (
                f":warning: I could not answer this time: {reason}. "
                "Try again in a minute, or escalate to the incident commander."
            )
            await (self.update(channel, placeholder, note) if placeholder else self.post(channel, thread_ts, note))
            return None
        interaction = await self._records.add_interaction(
            Interaction(
                origin=origin,
                user=user,
                channel=channel,
                thread_ts=thread_ts or placeholder,
                message_ts=placeholder,  # an alert's card: set once it is posted, below
                query=question,
                answer=answer.model_dump(mode="json"),
                context={"query": query, "thread": earlier, "retrieval": _context(retrieval)},
                model=answer.model,
                planner=answer.planner,
                abstained=answer.abstained,
                alert_group=alert_group,
            )
        )
        blocks = render_slack_blocks(answer, doc_url=self._doc_url, answer_id=str(interaction.id))
        if placeholder is not None:
            await self.update(channel, placeholder, fallback_text(answer), blocks)
        elif posted := await self.post(channel, thread_ts, fallback_text(answer), blocks):
            await self._records.update_interaction(interaction.id, message_ts=posted)
            interaction.message_ts = posted
        thread = thread_ts or placeholder
        if self.cfg.attach_picture and answer.workflow is not None and thread:
            await self._attach_picture(channel, thread, answer.workflow)
        outcome = "abstained" if answer.abstained else "answered"
        self._metrics.answers.labels(origin=origin, outcome=outcome).inc()
        self._metrics.answer_seconds.labels(origin=origin).observe(time.perf_counter() - started)
        log.info("answered", extra={"interaction": interaction.id, "outcome": outcome, "model": answer.model})
        return interaction

    async def _attach_picture(self, channel: str, thread_ts: str, workflow: Workflow) -> None:
        try:
            png = await asyncio.to_thread(render_png, workflow)
            await self.client.files_upload_v2(
                channel=channel, thread_ts=thread_ts, content=png, filename="workflow.png", title=workflow.title
            )
        except (OpsflowError, SlackApiError) as exc:  # the card is already there; the picture is extra
            log.warning("workflow picture not attached", extra={"error": str(exc)})

    async def drain(self, grace_s: float) -> None:
        """Wait (up to ``grace_s``) for answers in flight; called on shutdown."""
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=grace_s)

    # -- posting ----------------------------------------------------------------------------------

    async def post(
        self, channel: str, thread_ts: str | None, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> str | None:
        """Post a message (paced per channel); its ts, or None when Slack refused it (logged, counted)."""
        await self._pacer.wait(channel)
        try:
            reply = await self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=text, blocks=blocks)
        except SlackApiError as exc:
            self._api_error("chat.postMessage", exc)
            return None
        return str(reply["ts"])

    async def update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]] | None = None) -> bool:
        try:
            await self.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks or [])
        except SlackApiError as exc:
            self._api_error("chat.update", exc)
            return False
        return True

    async def _ephemeral(self, channel: str, user: str, text: str) -> None:
        try:
            await self.client.chat_postEphemeral(channel=channel, user=user, text=text)
        except SlackApiError as exc:
            self._api_error("chat.postEphemeral", exc)

    def _api_error(self, method: str, exc: SlackApiError) -> None:
        error = str(exc.response.get("error", "unknown")) if exc.response is not None else "unknown"
        self._metrics.slack_errors.labels(method=method, error=error).inc()
        log.warning("slack api error", extra={"method": method, "error": error})

    # -- feedback ---------------------------------------------------------------------------------

    def _vote_of(self, reaction: str) -> int:
        name = reaction.split("::", 1)[0]  # "+1::skin-tone-3" is still +1
        if name in self.cfg.upvote_emoji:
            return 1
        if name in self.cfg.downvote_emoji:
            return -1
        return 0

    async def _vote_by_reaction(self, event: dict[str, Any]) -> None:
        item = event.get("item")
        vote = self._vote_of(str(event.get("reaction", "")))
        if not isinstance(item, dict) or item.get("type") != "message" or not vote:
            return
        interaction = await self._records.interaction_at(str(item.get("channel")), str(item.get("ts")))
        if interaction is None:  # not one of the bot's answers
            return
        user = str(event.get("user", ""))
        if event["type"] == "reaction_added":
            await self._records.record_feedback(interaction.id, user, via="reaction", vote=vote)
            self._metrics.feedback.labels(kind="up" if vote > 0 else "down").inc()
            return
        current = await self._records.user_feedback(interaction.id, user)
        if current is not None and current.vote == vote:  # removing the reaction withdraws that vote only
            await self._records.record_feedback(interaction.id, user, via="reaction", vote=0)
            self._metrics.feedback.labels(kind="withdrawn").inc()

    async def _interaction_of(self, body: dict[str, Any]) -> Interaction | None:
        actions = body.get("actions") or [{}]
        value = actions[0].get("value") or actions[0].get("selected_option", {}).get("value", "")
        answer_id = str(value).split("|", 1)[0]
        return await self._records.interaction(int(answer_id)) if answer_id.isdigit() else None

    async def _on_vote_button(self, ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        interaction = await self._interaction_of(body)
        if interaction is None:
            await ack()
            return
        up = body["actions"][0]["action_id"] == FEEDBACK_UP
        await self._records.record_feedback(interaction.id, body["user"]["id"], via="button", vote=1 if up else -1)
        await ack()
        self._metrics.feedback.labels(kind="up" if up else "down").inc()
        if not up:
            await self._open_view(client, body["trigger_id"], _downvote_view(interaction.id))

    async def _on_downvote_reason(self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        interaction_id = int(view["private_metadata"])
        values = view["state"]["values"]
        reason = (values.get("reason", {}).get("reason", {}).get("value") or "").strip()
        if reason:
            await self._records.record_feedback(interaction_id, body["user"]["id"], via="modal", reason=reason)
            self._metrics.feedback.labels(kind="reason").inc()
        await ack()

    async def _on_edit_button(self, ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        interaction = await self._interaction_of(body)
        workflow = _workflow_of(interaction)
        if interaction is None or workflow is None:
            return
        await self._open_view(client, body["trigger_id"], _edit_view(interaction.id, workflow))

    async def _on_edit_submitted(self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        interaction = await self._records.interaction(int(view["private_metadata"]))
        original = _workflow_of(interaction)
        if interaction is None or original is None:
            await ack()
            return
        text = view["state"]["values"]["steps"]["steps"].get("value") or ""
        try:
            corrected = from_lines(text, original)
        except PlanError as exc:  # shown under the field; the modal stays open with the engineer's text
            await ack(response_action="errors", errors={"steps": str(exc)})
            return
        await self._records.record_feedback(
            interaction.id, body["user"]["id"], via="edit", corrected=corrected.model_dump(mode="json")
        )
        await ack()
        self._metrics.feedback.labels(kind="edit").inc()
        if interaction.channel and interaction.thread_ts:
            await self.post(
                interaction.channel,
                interaction.thread_ts,
                f"<@{body['user']['id']}> corrected this workflow; thank you, it is kept for training.",
            )

    async def _on_flag(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        interaction = await self._interaction_of(body)
        value = body["actions"][0].get("selected_option", {}).get("value", "")
        parts = str(value).split("|", 2)
        if interaction is None or len(parts) != 3 or parts[1] not in STEP_FLAGS:
            await ack()
            return
        _, flag, step = parts
        await self._records.record_feedback(interaction.id, body["user"]["id"], via="flag", step_flags={step: flag})
        await ack()
        self._metrics.feedback.labels(kind="flag").inc()
        if interaction.channel:
            await self._ephemeral(
                interaction.channel, body["user"]["id"], f"Recorded: step {step} — {STEP_FLAGS[flag]}."
            )

    async def _on_escalate(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        interaction = await self._interaction_of(body)
        if interaction is None or not interaction.channel:
            return
        await self._records.audit(body["user"]["id"], "escalate", {"interaction": interaction.id})
        await self.post(
            interaction.channel,
            interaction.thread_ts,
            f":rotating_light: <@{body['user']['id']}> is escalating: no runbook covers this. "
            "Page the owning team or the incident commander.",
        )

    async def _open_view(self, client: AsyncWebClient, trigger_id: str, view: dict[str, Any]) -> None:
        try:
            await client.views_open(trigger_id=trigger_id, view=view)
        except SlackApiError as exc:
            self._api_error("views.open", exc)

    # -- /opsflow ---------------------------------------------------------------------------------

    async def _on_command(self, ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
        sub, _, rest = (command.get("text") or "").strip().partition(" ")
        sub, rest, user = sub.lower(), rest.strip(), command.get("user_id", "")
        if sub in ("", "help"):
            await ack(text=HELP)
        elif sub == "ask":
            await ack(text=f"Looking into: _{rest}_" if rest else "Ask me something: `/opsflow ask <question>`")
            if rest:
                await self.ask(rest, channel=command.get("channel_id", ""), thread_ts=None, user=user)
        elif sub == "status":
            await ack()
            await respond(text=await self._status() if self._status else "opsflow is running.")
        elif sub in self._admin_commands:
            if not await self.is_admin(user):
                await ack(text=f"Sorry, `/opsflow {sub}` is for opsflow admins only. Ask one of them for help.")
                return
            await ack(text=f"Working on `/opsflow {sub} {rest}`…")
            await self._records.audit(user, f"slack:{sub}", {"args": rest})
            try:
                reply = await self._admin_commands[sub](rest, user)
            except OpsflowError as exc:
                reply = f":warning: `{sub}` failed: {exc}"
            await respond(text=reply)
        else:
            await ack(text=f"I don't know `{sub}`.\n{HELP}")

    async def is_admin(self, user: str) -> bool:
        """A configured admin: listed by user id, or a member of a listed user group (S…)."""
        if user in self.cfg.admins:
            return True
        for group in (a for a in self.cfg.admins if a.startswith("S")):
            try:
                reply = await self.client.usergroups_users_list(usergroup=group)
            except SlackApiError as exc:
                self._api_error("usergroups.users.list", exc)
                continue
            if user in (reply.get("users") or []):
                return True
        return False


def _context(retrieval: Retrieval) -> dict[str, Any]:
    """What the answer was built from, whole: the training data rebuilds the exact prompt from it."""
    return retrieval.model_dump(mode="json")


def _workflow_of(interaction: Interaction | None) -> Workflow | None:
    if interaction is None or interaction.abstained:
        return None
    return Answer.model_validate(interaction.answer).workflow


def _downvote_view(interaction_id: int) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": DOWNVOTE_VIEW,
        "private_metadata": str(interaction_id),
        "title": {"type": "plain_text", "text": "What was wrong?"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Skip"},
        "blocks": [
            {
                "type": "input",
                "block_id": "reason",
                "optional": True,
                "label": {"type": "plain_text", "text": "Tell us what was wrong (optional)"},
                "element": {"type": "plain_text_input", "action_id": "reason", "multiline": True, "max_length": 3000},
            }
        ],
    }


def _edit_view(interaction_id: int, workflow: Workflow) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": EDIT_VIEW,
        "private_metadata": str(interaction_id),
        "title": {"type": "plain_text", "text": "Correct the workflow"},
        "submit": {"type": "plain_text", "text": "Save"},
        "blocks": [
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": "One step a line: `3. do this` (then the next line), "
                        "`4? is it so? yes: 5 no: 6`, `7= done`.",
                    }
                ],
            },
            {
                "type": "input",
                "block_id": "steps",
                "label": {"type": "plain_text", "text": "Steps"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": "steps",
                    "multiline": True,
                    "initial_value": to_lines(workflow)[:3000],
                    "max_length": 3000,
                },
            },
        ],
    }
