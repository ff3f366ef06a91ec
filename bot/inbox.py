"""The Slack inbox: a person's question is written to the record store before Slack gets its 200, answered
after the ack, then marked answered; a question left unanswered by a replica that stopped is answered by
a replica sweeping the inbox.

The writes on the ack path are group-committed on threads of the inbox's own: questions arriving
together (50 mentions at once) share a transaction or two, and a commit never waits behind retrieval
work (embeddings, keyword search) in the loop's default thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bot.records import BotRecords
from core.errors import OpsflowError

log = logging.getLogger(__name__)

PEOPLE = {None, "file_share", "thread_broadcast", "me_message"}
"""Message subtypes that are a person's message with text; every other subtype is not a question."""

WRITERS = 2
"""Batches committed at once: a batch starts while the one before is still committing (its fsync)."""

Answer = Callable[[str, dict[str, Any]], Coroutine[Any, Any, None]]
"""Answers a question taken over from the inbox: (its key, Slack's event)."""


def is_persons_dm(event: dict[str, Any]) -> bool:
    """A direct message a person wrote (also with a file); not a bot's, a join or an edit."""
    return (
        event.get("channel_type") == "im"
        and not event.get("bot_id")
        and event.get("subtype") in PEOPLE
        and bool(event.get("user"))
    )


def question_key(body: dict[str, Any]) -> str | None:
    """``team:channel:ts`` of the message when the request is a question for the bot (a mention or a
    person's DM), else None. Keyed by the message, so an edit (a new event, same ts) is the same key."""
    event = body.get("event")
    if body.get("type") != "event_callback" or not isinstance(event, dict):
        return None
    if event.get("type") == "app_mention" or (event.get("type") == "message" and is_persons_dm(event)):
        return f"{body.get('team_id', '')}:{event.get('channel', '')}:{event.get('ts', '')}"
    return None


class Inbox:
    """Questions taken up once across retries, edits and replicas, and answered even when a replica stops.

    ``stale_s``: how long a question may stay unanswered before another replica takes it over (longer
    than an answer may take); ``sweep_s``: how often the inbox is swept.
    """

    def __init__(self, records: BotRecords, *, stale_s: float, sweep_s: float = 60.0) -> None:
        self._records = records
        self._stale = dt.timedelta(seconds=stale_s)
        self._sweep_s = sweep_s
        self._threads = ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="slack-inbox")
        self._new: dict[str, tuple[dict[str, Any], asyncio.Future[bool]]] = {}
        self._writers: set[asyncio.Task[None]] = set()
        self._settled = asyncio.Event()  # no question waits to be written
        self._settled.set()
        self._sweeper: asyncio.Task[None] | None = None

    async def take_up(self, key: str, event: dict[str, Any]) -> bool:
        """Write the question durably; True when no replica took it up before (answer it), False for a
        retry or an edit. Raises ``BackendUnavailable`` when the store is down (refuse: Slack resends)."""
        if key in self._new:  # the same message twice in one batch (an edit right behind it)
            return False
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._new[key] = (event, future)
        self._settled.clear()
        if len(self._writers) < WRITERS:
            writer = asyncio.create_task(self._write(), name="slack-inbox-writer")
            self._writers.add(writer)
            writer.add_done_callback(self._writer_done)
        return await future

    def _writer_done(self, writer: asyncio.Task[None]) -> None:
        self._writers.discard(writer)
        if not self._writers:
            self._settled.set()

    async def settled(self, within: float = 1.0) -> None:
        """Wait (up to ``within`` s) until no question waits to be written: answers start after a burst of
        mentions is acknowledged, so their CPU work does not hold up the acks (Slack wants one in 3 s)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), within)

    async def _write(self) -> None:
        """Commit what is queued, batch after batch, until nothing is (what arrives meanwhile joins the next)."""
        while self._new:
            batch, self._new = self._new, {}
            try:
                taken = await self._records.write_inbox(
                    {key: event for key, (event, _) in batch.items()}, (), executor=self._threads
                )
            except Exception as exc:  # every waiter learns of it; the next batch tries again
                for _, future in batch.values():
                    if not future.done():  # done: its request was cancelled (the client went away)
                        future.set_exception(exc)
                continue
            for key, (_, future) in batch.items():
                if not future.done():
                    future.set_result(key in taken)

    async def answered(self, key: str) -> None:
        """Mark the question answered (the card or a note about a failure is shown)."""
        try:  # not on the inbox's threads: those are kept for the ack path
            await self._records.write_inbox({}, [key])
        except OpsflowError as exc:  # it stays "taken up": a sweep may answer it once more
            log.warning("answer not marked in the inbox", extra={"key": key, "error": str(exc)})

    async def start(self, answer: Answer) -> None:
        """Open the writers' connections (not in the first burst of mentions), then sweep the inbox now and
        every ``sweep_s``, answering what stopped replicas left with ``answer``."""
        await asyncio.gather(*(self._records.write_inbox({}, (), executor=self._threads) for _ in range(WRITERS)))
        self._sweeper = asyncio.create_task(self._sweep(answer), name="slack-inbox-sweeper")

    async def _sweep(self, answer: Answer) -> None:
        while True:
            try:
                for key, event in await self._records.take_over_inbox(self._stale):
                    log.warning("answering a question a stopped replica took up", extra={"key": key})
                    await asyncio.create_task(answer(key, event))  # its own task: a shutdown drains it alone
            except OpsflowError as exc:
                log.warning("inbox sweep failed", extra={"error": str(exc)})
            await asyncio.sleep(self._sweep_s)

    async def stop(self) -> None:
        """Stop sweeping and let the last batch commit."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await asyncio.gather(*self._writers, return_exceptions=True)
        self._threads.shutdown(wait=False)
