"""Alerts → Slack threads: one thread per alert group and channel, updated on repeat and resolve, never spammed.

``receive`` routes each alert to its channel and stores it under its thread's key (``thread_key``:
the source, the sender's group key and the channel), and only then returns (the webhook answers 2xx
after it), so an alert accepted is an alert kept. Workers post what is stored: a group is leased in
the database before it is posted, so of several replicas on one database one posts it, from
everything stored for it since the last post, and a storm of repeats collapses into few Slack calls.
A new thread is recorded as intended before it is posted and looked for in the channel if a crash
came in between, so a restart does not post it twice. When more alerts wait than
the queue holds, ``receive`` refuses with ``Overloaded`` (the webhook answers 503 and Alertmanager
retries) instead of dropping any.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import alert_cards, alert_groups
from bot.alert_groups import AlertIntent
from bot.metrics import Metrics
from bot.records import AlertRecord, AlertThread, BotRecords
from connectors.alerts import AlertBatch, route
from core.errors import OpsflowError
from core.settings import AlertSettings
from core.types import Alert
from trainer.schedules import Leases
from trainer.store import Interaction

log = logging.getLogger(__name__)

CARD_REFRESH_S = 30.0  # least time between two edits of a card whose status did not change
_MAX_KEY = 300  # characters of alert_threads.group_key
_TRUNCATED = "truncated_alerts"  # kept beside the alert in a stored row when its sender truncated the group


class Overloaded(OpsflowError):
    """More alerts are waiting than the queue holds; the sender should retry later."""


class AlertSlack(Protocol):
    """What the dispatcher needs of the Slack side (the thread service)."""

    async def post(
        self, channel: str, thread_ts: str | None, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> str | None: ...

    async def update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]] | None = None) -> bool: ...

    async def ask(
        self,
        question: str,
        *,
        channel: str,
        thread_ts: str | None,
        user: str,
        origin: str,
        alert_group: str | None,
        labels: Mapping[str, str] | None,
    ) -> Interaction | None: ...


def thread_key(alert: Alert, channel: str) -> str:
    """The key of the thread ``alert`` belongs to in ``channel``: its source, its sender-scoped group key
    and the channel (the same group routed to two channels is two threads). Hashed when long."""
    key = f"{alert.source} {channel} {alert.group_key}"
    return key if len(key) <= _MAX_KEY else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def stored_alert(row: AlertRecord) -> tuple[Alert, int]:
    """The alert of a stored row, and how many alerts of its group its sender left out."""
    values = dict(row.alert)
    truncated = int(values.pop(_TRUNCATED, 0))
    return Alert.model_validate(values), truncated


class AlertDispatcher:
    """Stores incoming alerts and posts them, by group, to their routed channel's thread."""

    def __init__(
        self,
        cfg: AlertSettings,
        records: BotRecords,
        slack: AlertSlack,
        metrics: Metrics,
        *,
        client: AsyncWebClient,
        after_answer: Callable[[Interaction], Awaitable[object]] | None = None,
        retry_s: float = 5.0,
        busy_s: float = 0.5,
        lease: dt.timedelta = dt.timedelta(minutes=5),
    ) -> None:
        """``client`` reads channel history when a thread's intent must be reconciled; ``busy_s`` is how
        soon a group another replica holds is tried again; ``lease`` outlasts any one group's posting (a
        replica that dies holding one delays the group by up to that)."""
        self._cfg = cfg
        self._records = records
        self._slack = slack
        self._client = client
        self._metrics = metrics
        self._retry_s = retry_s
        self._busy_s = busy_s
        self._lease = lease
        self._after_answer = after_answer
        self._leases = Leases(records, f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}")
        self._followers: set[asyncio.Task[None]] = set()
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._waiting: set[str] = set()  # groups to try again after a delay
        self._posting: set[str] = set()  # groups a worker of this process has in hand (the lease is per process)
        self._again: set[str] = set()  # …and that came in again meanwhile
        self._backlog = 0
        self._workers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start the workers, and queue what was stored but not posted (or opened but not saved) before."""
        self._backlog = await alert_groups.unposted_count(self._records)
        for group in await alert_groups.waiting_groups(self._records):
            self._schedule(group)
        self._workers = [asyncio.create_task(self._work(), name=f"alerts-{i}") for i in range(self._cfg.workers)]

    async def stop(self, grace_s: float = 10.0) -> None:
        """Finish the groups being posted (up to ``grace_s``); what is still queued stays stored for next start."""
        if self._queue.qsize() == 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), grace_s)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        if self._followers:
            await asyncio.wait(set(self._followers), timeout=grace_s)

    async def idle(self) -> None:
        """Wait until every queued group has been handled and answered (tests and benchmarks)."""
        while True:
            await self._queue.join()
            if self._followers:
                await asyncio.wait(set(self._followers))
            if not self._waiting and self._queue.empty():
                self._backlog = await alert_groups.unposted_count(self._records)
                return
            await asyncio.sleep(self._busy_s)  # a group held elsewhere or refused is tried again soon

    @property
    def backlog(self) -> int:
        """Alerts stored by any replica and not yet posted, as counted after this replica last posted a group
        (plus what it stored since)."""
        return self._backlog

    async def receive(self, alerts: Sequence[Alert]) -> int:
        """Route ``alerts``, store them durably and queue their groups; returns how many were stored.

        An alert no route or default channel takes is counted as refused (``unrouted``) and not stored.
        """
        if self._backlog + len(alerts) > self._cfg.queue_size:
            raise Overloaded(f"{self._backlog} alerts are waiting to be posted (queue holds {self._cfg.queue_size})")
        truncated = alerts.truncated if isinstance(alerts, AlertBatch) else 0
        rows = []
        for alert in alerts:
            channel = route(alert, self._cfg.routes, self._cfg.default_channel)
            if channel is None:
                self._metrics.alerts_refused.labels(source=alert.source, reason="unrouted").inc()
                log.warning("alert has no channel: set OPSFLOW_ALERTS__DEFAULT_CHANNEL", extra={"alert": alert.name})
                continue
            values = alert.model_dump(mode="json") | ({_TRUNCATED: truncated} if truncated else {})
            rows.append(
                AlertRecord(
                    source=alert.source,
                    fingerprint=alert.fingerprint,
                    group_key=thread_key(alert, channel),
                    status=alert.status,
                    alert=values,
                )
            )
            self._metrics.alerts.labels(source=alert.source, status=alert.status).inc()
        if rows:
            await self._records.add_alerts(rows)
        self._backlog += len(rows)
        for group in dict.fromkeys(row.group_key for row in rows):
            self._schedule(group)
        return len(rows)

    def _schedule(self, group: str) -> None:
        self._waiting.discard(group)
        if group not in self._queued:
            self._queued.add(group)
            self._queue.put_nowait(group)
            self._metrics.alert_queue.set(self._queue.qsize())

    def _later(self, group: str, delay: float) -> None:
        self._waiting.add(group)
        asyncio.get_running_loop().call_later(delay, self._schedule, group)

    async def _work(self) -> None:
        while True:
            group = await self._queue.get()
            self._queued.discard(group)
            self._metrics.alert_queue.set(self._queue.qsize())
            if group in self._posting:  # another worker here has it: it takes the group up again when done
                self._again.add(group)
                self._queue.task_done()
                continue
            self._posting.add(group)
            try:
                lease = alert_groups.lease_name(group)
                if not await self._leases.acquire(lease, self._lease):
                    # Another replica posts the group now; what it leaves, this one takes next time.
                    self._later(group, self._busy_s)
                    continue
                try:
                    await self._post_group(group)
                finally:
                    await self._leases.release(lease)
                self._backlog = await alert_groups.unposted_count(self._records)
            except (OpsflowError, _NotPosted) as exc:
                # Stored, so not lost: try the group again shortly (Slack or the store may be back).
                log.warning("alert group not posted; will retry", extra={"group": group, "error": str(exc)})
                self._later(group, self._retry_s)
            except Exception:
                log.exception("alert group failed", extra={"group": group})
            finally:
                self._posting.discard(group)
                if group in self._again:
                    self._again.discard(group)
                    self._schedule(group)
                self._queue.task_done()

    async def _post_group(self, group: str) -> None:
        rows = await self._records.unposted_alerts(group)
        thread = await self._records.alert_thread(group)
        opening = await alert_groups.intent(self._records, group) if thread is None else None
        if opening is not None and await self._reconcile(group, opening, rows):
            return
        if not rows:
            return
        stored = [stored_alert(row) for row in rows]
        latest = list({alert.fingerprint: alert for alert, _ in stored}.values())
        truncated = stored[-1][1]
        firing = dict(thread.firing) if thread else {}
        common = alert_cards.common_labels(latest)
        for alert in latest:
            if alert.status == "firing":
                firing[alert.fingerprint] = alert_cards.line(alert, common)
            else:
                firing.pop(alert.fingerprint, None)
        ids = [row.id for row in rows]
        if thread is None:
            await self._open_thread(group, latest, firing, truncated, ids)
        else:
            await self._update_thread(thread, latest, firing, truncated, ids)

    async def _open_thread(
        self, group: str, alerts: list[Alert], firing: dict[str, str], truncated: int, ids: list[int]
    ) -> None:
        channel = route(alerts[-1], self._cfg.routes, self._cfg.default_channel)
        if channel is None:  # the routes changed since the alerts were stored: keep them for a later config
            raise _NotPosted(f"no channel for {group} any more")
        text, blocks = alert_cards.card(alerts, firing, truncated=truncated)
        token = uuid.uuid4().hex
        blocks[0]["block_id"] = alert_groups.header_block_id(token)
        await alert_groups.intend(self._records, group, token, channel)
        ts = await self._slack.post(channel, None, text, blocks)
        if ts is None:
            raise _NotPosted(f"Slack refused the thread for {group}")
        await self._opened(group, channel, ts, alerts, firing, ids)

    async def _opened(
        self, group: str, channel: str, ts: str, alerts: list[Alert], firing: dict[str, str], ids: list[int]
    ) -> None:
        now = dt.datetime.now(dt.UTC)
        status = "firing" if firing else "resolved"
        thread = AlertThread(
            group_key=group, channel=channel, thread_ts=ts, status=status, firing=firing, created_at=now, updated_at=now
        )
        await alert_groups.settle(self._records, thread, ids)
        question = alert_cards.question(alerts)
        if question is not None and self._cfg.answer:
            # The workflow (and the channel's automatic checks) follow in the thread; planning takes a
            # while, and other groups' threads should not wait for it. The lead alert's labels fill the
            # checks' placeholders ({{ $labels.namespace }}).
            labels = alert_cards.firing(alerts)[0].labels
            follower = asyncio.create_task(
                self._answer(question, channel, ts, group, labels), name=f"alert-answer-{group}"
            )
            self._followers.add(follower)
            follower.add_done_callback(self._followers.discard)

    async def _reconcile(self, group: str, opening: AlertIntent, rows: list[AlertRecord]) -> bool:
        """A thread was about to be posted when the last attempt stopped: adopt it if Slack has it, so it
        is not posted twice (True); False when it never reached Slack (it is to be posted now)."""
        ts = await self._find(opening.channel, opening.token, opening.at)
        if ts is None:
            return False
        log.info("adopted an alert thread posted before a restart", extra={"group": group, "ts": ts})
        stored = [stored_alert(row) for row in rows]
        alerts = list({alert.fingerprint: alert for alert, _ in stored}.values())
        common = alert_cards.common_labels(alerts)
        firing = {a.fingerprint: alert_cards.line(a, common) for a in alerts if a.status == "firing"}
        if alerts:  # its card shows what was known then; bring it up to date
            text, blocks = alert_cards.card(alerts, firing, truncated=stored[-1][1])
            await self._slack.update(opening.channel, ts, text, blocks)
        await self._opened(group, opening.channel, ts, alerts, firing, [row.id for row in rows])
        return True

    async def _find(self, channel: str, token: str, since: dt.datetime, pages: int = 5) -> str | None:
        """The ts of the channel's message posted under ``token`` (newest first, from ``since``), or None."""
        oldest = f"{since.timestamp() - 60:.6f}"  # a minute of clock difference between us and Slack
        try:
            response = await self._client.conversations_history(channel=channel, oldest=oldest, limit=200)
            async for page in response:
                for message in page.get("messages", []):
                    if alert_groups.carries(message, token):
                        return str(message["ts"])
                pages -= 1
                if pages == 0:
                    break
        except SlackApiError as exc:  # e.g. no channels:history scope: a second thread beats a lost one
            log.warning("cannot look for an interrupted alert thread", extra={"channel": channel, "error": str(exc)})
        return None

    async def _answer(self, question: str, channel: str, thread_ts: str, group: str, labels: Mapping[str, str]) -> None:
        try:
            answer = await self._slack.ask(
                question,
                channel=channel,
                thread_ts=thread_ts,
                user="",
                origin="alert",
                alert_group=group,
                labels=labels,
            )
            if answer is not None and self._after_answer is not None:
                await self._after_answer(answer)
        except OpsflowError as exc:  # the thread stands; the answer is the part that failed
            log.warning("no workflow for alert", extra={"group": group, "error": str(exc)})

    async def _update_thread(
        self, thread: AlertThread, alerts: list[Alert], firing: dict[str, str], truncated: int, ids: list[int]
    ) -> None:
        now = dt.datetime.now(dt.UTC)
        status = "firing" if firing else "resolved"
        if status == thread.status and firing == thread.firing:
            await alert_groups.settle(self._records, thread, ids)
            return  # a repeat: nothing a person would see has changed
        if status == thread.status and (now - thread.updated_at).total_seconds() < CARD_REFRESH_S:
            # Only the set of firing alerts changed, and the card was edited moments ago: keep the state,
            # edit the card with a later change (Slack allows ~50 chat.update a minute per workspace).
            thread.firing = firing
            await alert_groups.settle(self._records, thread, ids)
            return
        flapping = (
            status == "firing"
            and thread.status == "resolved"
            and thread.resolved_at is not None
            and (now - thread.resolved_at).total_seconds() < self._cfg.flap_window_s
        )
        text, blocks = alert_cards.card(alerts, firing, truncated=truncated, flapping=flapping)
        if not await self._slack.update(thread.channel, thread.thread_ts, text, blocks):
            raise _NotPosted(f"Slack refused the update of {thread.group_key}")
        if status != thread.status and not flapping:
            note = ":white_check_mark: Resolved." if status == "resolved" else ":fire: Firing again."
            await self._slack.post(thread.channel, thread.thread_ts, note)
        thread.status, thread.firing, thread.updated_at = status, firing, now
        if status == "resolved":
            thread.resolved_at = now
        await alert_groups.settle(self._records, thread, ids)


class _NotPosted(Exception):
    """Slack did not take the message; the group is retried."""
