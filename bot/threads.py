"""The thread service: a question in a Slack thread → a placeholder → the workflow card → a recorded answer.

It knows nothing of Bolt. Mentions, DMs, ``/opsflow ask``, alert threads and checks all come here
with an ``Asked``. Whatever fails on the way, the placeholder is replaced: by the card, or by a note
saying what failed. Where the bot may not post (a slash command from a private channel it is not in,
or from a DM between two people), the answer goes to the command's ``response_url`` instead, with why.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.metrics import Metrics
from bot.records import BotRecords
from bot.service import Service, off_loop
from bot.slack_api import CANNOT_POST, SlackApi, escaped
from core.errors import OpsflowError
from core.settings import SlackSettings
from core.types import Answer, Retrieval, ToolSpec, Workflow
from generation.actions import attach_actions, entities_of
from generation.rendering import DocUrl, fallback_text, render_png, render_slack_blocks
from trainer.store import Interaction

log = logging.getLogger(__name__)

PLACEHOLDER = ":mag: Looking into it…"
MAX_QUESTION = 4000  # characters; a pasted log is not a question, and retrieval reads only the start

HELP = """*opsflow* answers incidents with step-by-step workflows from your runbooks.
• `@opsflow <question>` in a channel or thread, or a DM — follow-ups in the thread keep its context
• `/opsflow ask <question>` — answer in this channel
• `/opsflow status` — what the bot knows and which models it uses
• react 👍 / 👎 on an answer, or use its buttons; *Edit* corrects the steps
Admins: `/opsflow ingest PATH` · `/opsflow train …` · `/opsflow schedule …` · `/opsflow models …`"""

_WHY_NOT = {
    "not_in_channel": "I'm not a member of this channel (invite me with `/invite @opsflow` to answer here)",
    "channel_not_found": "I can't see this conversation (a private channel I'm not in, or a DM between people)",
}


@dataclass(frozen=True)
class Asked:
    """A question as a front end hands it over: the text, who asked, where, and what started the thread."""

    text: str
    channel: str
    thread_ts: str | None
    user: str
    origin: str = "slack"  # slack | command | alert
    alert_group: str | None = None
    response_url: str | None = None
    labels: Mapping[str, str] = field(
        default_factory=dict
    )  # the alert's, for the checks' placeholders  # a slash command's: where to answer when posting is refused


class _Reply:
    """Where the answer is shown: a placeholder in the thread that is edited, else the response URL."""

    def __init__(self, api: SlackApi, asked: Asked) -> None:
        self._api, self._asked = api, asked
        self.ts: str | None = None  # the message that shows the answer, once there is one
        self.url: str | None = None

    async def start(self) -> bool:
        """Show the placeholder; False when the answer can be shown nowhere."""
        asked = self._asked
        posted = await self._api.send(asked.channel, asked.thread_ts, PLACEHOLDER)
        if posted.ts is not None:
            self.ts = posted.ts
            return True
        if asked.response_url and posted.error in CANNOT_POST:
            why = _WHY_NOT.get(posted.error, f"Slack refused my message ({posted.error})")
            self.url = asked.response_url
            return await self._api.respond(self.url, f"{why}; the answer comes here, only you see it. {PLACEHOLDER}")
        return False

    async def finish(self, text: str, blocks: list[dict[str, Any]] | None = None) -> str | None:
        """Replace the placeholder (or post, for an alert's thread); the answer message's ts, if any."""
        asked = self._asked
        if self.url is not None:
            await self._api.respond(self.url, text, blocks, replace=True)
            return None
        if self.ts is not None:
            return self.ts if await self._api.update(asked.channel, self.ts, text, blocks) else None
        self.ts = await self._api.post(asked.channel, asked.thread_ts, text, blocks)
        return self.ts


class ThreadService:
    """Answers questions in Slack threads and records the answers; ``post``/``update`` for alert cards."""

    def __init__(
        self,
        cfg: SlackSettings,
        service: Service,
        records: BotRecords,
        api: SlackApi,
        metrics: Metrics,
        *,
        tools: Mapping[str, ToolSpec] | None = None,
        doc_url: DocUrl | None = None,
    ) -> None:
        """``tools`` (the catalogue) turn the runbook's checks into steps' actions on the card."""
        self._cfg = cfg
        self._service = service
        self._records = records
        self.api = api
        self._metrics = metrics
        self._doc_url = doc_url
        self._tools = dict(tools or {})
        self._inflight: set[asyncio.Task[Any]] = set()

    async def post(
        self, channel: str, thread_ts: str | None, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> str | None:
        """Post a message (paced per channel); its ts, or None when Slack refused it."""
        return await self.api.post(channel, thread_ts, text, blocks)

    async def update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]] | None = None) -> bool:
        """Edit a posted message; False when Slack refused."""
        return await self.api.update(channel, ts, text, blocks)

    async def ask(
        self,
        question: str,
        *,
        channel: str,
        thread_ts: str | None,
        user: str,
        origin: str = "slack",
        alert_group: str | None = None,
        response_url: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Interaction | None:
        """Answer ``question`` in the thread; the recorded answer, or None when there is none to record.
        ``labels`` (an alert's) and the entities the question names fill the checks' placeholders."""
        asked = Asked(question, channel, thread_ts, user, origin, alert_group, response_url, dict(labels or {}))
        task = asyncio.current_task()
        if task is not None:  # tracked so a shutdown finishes the answer instead of cutting it
            self._inflight.add(task)
        try:
            return await self._ask(asked)
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def drain(self, grace_s: float) -> None:
        """Wait (up to ``grace_s``) for answers in flight; called on shutdown."""
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=grace_s)

    async def _ask(self, asked: Asked) -> Interaction | None:
        started = time.perf_counter()
        reply = _Reply(self.api, asked)
        if not asked.text or len(asked.text) > MAX_QUESTION:
            await reply.finish(HELP if not asked.text else _too_long(asked.text))
            return None
        # A person who asked sees a placeholder at once; an alert's thread gets the card when it is ready
        # (one message instead of two under Slack's per-channel pace, when alerts arrive in bulk).
        if asked.origin != "alert" and not await reply.start():
            self._metrics.answers.labels(origin=asked.origin, outcome="unposted").inc()
            return None
        try:
            interaction = await self._answer(asked, reply)
        except Exception as exc:  # whatever failed, the placeholder must not stay: say what failed instead
            reason = str(exc) or f"no answer within {self._cfg.answer_timeout_s:.0f} s"
            if not isinstance(exc, OpsflowError | TimeoutError):
                log.exception("answer failed", extra={"channel": asked.channel})
                reason = f"an internal error ({type(exc).__name__})"
            log.warning("answer failed", extra={"channel": asked.channel, "error": reason})
            self._metrics.answers.labels(origin=asked.origin, outcome="failed").inc()
            await reply.finish(
                f":warning: I could not answer this time: {escaped(reason)}. "
                "Try again in a minute, or escalate to the incident commander."
            )
            return None
        outcome = "abstained" if interaction.abstained else "answered"
        self._metrics.answers.labels(origin=asked.origin, outcome=outcome).inc()
        self._metrics.answer_seconds.labels(origin=asked.origin).observe(time.perf_counter() - started)
        log.info("answered", extra={"interaction": interaction.id, "outcome": outcome, "model": interaction.model})
        return interaction

    async def _answer(self, asked: Asked, reply: _Reply) -> Interaction:
        history = await self._records.thread_history(asked.channel, asked.thread_ts) if asked.thread_ts else []
        # A follow-up is read together with the thread's first question (or alert): that names the incident.
        earlier = history[0].query if history else ""
        query = f"{asked.text} ({earlier})" if earlier and earlier not in asked.text else asked.text
        answer, retrieval = await asyncio.wait_for(self._service.answer(query), timeout=self._cfg.answer_timeout_s)
        known = {**entities_of(query), **asked.labels}
        if answer.workflow is not None:
            chunks = {p.chunk.chunk_id: p.chunk for p in retrieval.passages}
            workflow = await off_loop(functools.partial(attach_actions, answer.workflow, chunks, self._tools, known))
            answer = answer.model_copy(update={"workflow": workflow})
        interaction = await self._records.add_interaction(
            Interaction(
                origin=asked.origin,
                user=asked.user,
                channel=asked.channel,
                thread_ts=asked.thread_ts or reply.ts,
                message_ts=reply.ts,  # an alert's card: set once it is posted, below
                query=asked.text,
                answer=answer.model_dump(mode="json"),
                context={"query": query, "thread": earlier, "known": known, "retrieval": _context(retrieval)},
                model=answer.model,
                planner=answer.planner,
                abstained=answer.abstained,
                alert_group=asked.alert_group,
            )
        )
        blocks = card(answer, self._doc_url, str(interaction.id))
        posted = await reply.finish(fallback_text(answer), blocks)
        if posted != interaction.message_ts:
            interaction.message_ts = posted
            try:
                await self._records.update_interaction(interaction.id, message_ts=posted)
            except OpsflowError as exc:  # the card is up and its buttons carry the answer id; reactions miss it
                log.warning("answer message not recorded", extra={"interaction": interaction.id, "error": str(exc)})
        thread = asked.thread_ts or reply.ts
        if self._cfg.attach_picture and answer.workflow is not None and thread and reply.url is None:
            await self._attach_picture(asked.channel, thread, answer.workflow)
        return interaction

    async def _attach_picture(self, channel: str, thread_ts: str, workflow: Workflow) -> None:
        try:
            png = await asyncio.to_thread(render_png, workflow)
            await self.api.client.files_upload_v2(
                channel=channel, thread_ts=thread_ts, content=png, filename="workflow.png", title=workflow.title
            )
        except (OpsflowError, SlackApiError) as exc:  # the card is already there; the picture is extra
            log.warning("workflow picture not attached", extra={"error": str(exc)})


def card(answer: Answer, doc_url: DocUrl | None, answer_id: str) -> list[dict[str, Any]]:
    """The answer's Block Kit card; a workflow's note (a correction's author, a fallback) under its header."""
    blocks = render_slack_blocks(answer, doc_url=doc_url, answer_id=answer_id)
    if answer.abstained or not answer.reason:
        return blocks
    note = {"type": "context", "elements": [{"type": "mrkdwn", "text": f"✎ {answer.reason}"[:3000]}]}
    return [blocks[0], note, *blocks[1:]][:50]


def _too_long(question: str) -> str:
    return (
        f":warning: That message is {len(question):,} characters; ask in under {MAX_QUESTION:,} "
        "(describe the symptom or paste the alert name rather than whole logs)."
    )


def _context(retrieval: Retrieval) -> dict[str, Any]:
    """What the answer was built from, whole: the training data rebuilds the exact prompt from it."""
    return retrieval.model_dump(mode="json")
