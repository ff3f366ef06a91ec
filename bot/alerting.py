"""Alerts → Slack threads: one thread per alert group, updated on repeat and resolve, never spammed.

``receive`` stores the alerts and only then returns (the webhook answers 2xx after it), so an alert
accepted is an alert kept. Workers post what is stored: each group is handled by one worker at a time,
from everything stored for it since the last post, so a storm of repeats collapses into few Slack
calls. When more alerts wait than the queue holds, ``receive`` refuses with ``Overloaded`` (the
webhook answers 503 and Alertmanager retries) instead of dropping any.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from bot.metrics import Metrics
from bot.slack import SlackBot
from connectors.alerts import route
from core.errors import OpsflowError
from core.settings import AlertSettings
from core.types import Alert
from trainer.store import AlertRecord, AlertThread, Interaction, RecordStore

log = logging.getLogger(__name__)

_ICON = {"firing": ":fire:", "resolved": ":white_check_mark:"}
CARD_REFRESH_S = 30.0  # least time between two edits of a card whose status did not change


class Overloaded(OpsflowError):
    """More alerts are waiting than the queue holds; the sender should retry later."""


class AlertDispatcher:
    """Stores incoming alerts and posts them, by group, to their routed channel's thread."""

    def __init__(
        self,
        cfg: AlertSettings,
        records: RecordStore,
        slack: SlackBot,
        metrics: Metrics,
        *,
        after_answer: Callable[[Interaction], Awaitable[object]] | None = None,
        retry_s: float = 5.0,
    ) -> None:
        self._cfg = cfg
        self._records = records
        self._slack = slack
        self._metrics = metrics
        self._retry_s = retry_s
        self._after_answer = after_answer
        self._followers: set[asyncio.Task[None]] = set()
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._backlog = 0
        self._workers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start the workers, and queue what was stored but not posted before the last stop."""
        waiting = await self._records.unposted_alerts()
        self._backlog = len(waiting)
        for group in dict.fromkeys(row.group_key for row in waiting):
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
        await self._queue.join()
        if self._followers:
            await asyncio.wait(set(self._followers))

    @property
    def backlog(self) -> int:
        return self._backlog

    async def receive(self, alerts: list[Alert]) -> int:
        """Store ``alerts`` durably and queue their groups; returns how many were stored."""
        if self._backlog + len(alerts) > self._cfg.queue_size:
            raise Overloaded(f"{self._backlog} alerts are waiting to be posted (queue holds {self._cfg.queue_size})")
        rows = [
            AlertRecord(
                source=a.source,
                fingerprint=a.fingerprint,
                group_key=a.group_key,
                status=a.status,
                alert=a.model_dump(mode="json"),
            )
            for a in alerts
        ]
        await self._records.add_alerts(rows)
        self._backlog += len(rows)
        for alert in alerts:
            self._metrics.alerts.labels(source=alert.source, status=alert.status).inc()
        for group in dict.fromkeys(a.group_key for a in alerts):
            self._schedule(group)
        return len(rows)

    def _schedule(self, group: str) -> None:
        if group not in self._queued:
            self._queued.add(group)
            self._queue.put_nowait(group)
            self._metrics.alert_queue.set(self._queue.qsize())

    async def _work(self) -> None:
        while True:
            group = await self._queue.get()
            self._queued.discard(group)
            self._metrics.alert_queue.set(self._queue.qsize())
            try:
                async with self._locks[group]:
                    await self._post_group(group)
            except (OpsflowError, _NotPosted) as exc:
                # Stored, so not lost: try the group again shortly (Slack or the store may be back).
                log.warning("alert group not posted; will retry", extra={"group": group, "error": str(exc)})
                asyncio.get_running_loop().call_later(self._retry_s, self._schedule, group)
            except Exception:
                log.exception("alert group failed", extra={"group": group})
            finally:
                self._queue.task_done()

    async def _post_group(self, group: str) -> None:
        rows = await self._records.unposted_alerts(group)
        if not rows:
            return
        alerts = [Alert.model_validate(row.alert) for row in rows]
        thread = await self._records.alert_thread(group)
        firing = dict(thread.firing) if thread else {}
        for alert in alerts:
            if alert.status == "firing":
                firing[alert.fingerprint] = alert.name
            else:
                firing.pop(alert.fingerprint, None)
        status = "firing" if firing else "resolved"
        latest = alerts[-1]
        if thread is None:
            await self._open_thread(group, latest, status, firing)
        else:
            await self._update_thread(thread, latest, status, firing)
        await self._records.mark_alerts_posted([row.id for row in rows])
        self._backlog -= len(rows)

    async def _open_thread(self, group: str, alert: Alert, status: str, firing: dict[str, Any]) -> None:
        channel = route(alert, self._cfg.routes, self._cfg.default_channel)
        if channel is None:
            self._metrics.alerts_refused.labels(source=alert.source, reason="unrouted").inc()
            log.warning("alert has no channel: set OPSFLOW_ALERTS__DEFAULT_CHANNEL", extra={"group": group})
            return
        text, blocks = _card(alert, status, firing, flapping=False)
        ts = await self._slack.post(channel, None, text, blocks)
        if ts is None:
            raise _NotPosted(f"Slack refused the thread for {group}")
        now = dt.datetime.now(dt.UTC)
        thread = AlertThread(
            group_key=group, channel=channel, thread_ts=ts, status=status, firing=firing, created_at=now, updated_at=now
        )
        await self._records.save_alert_thread(thread)
        if status == "firing" and self._cfg.answer:
            # The workflow (and the channel's automatic checks) follow in the thread; planning takes a
            # while, and other groups' threads should not wait for it.
            follower = asyncio.create_task(self._answer(alert, channel, ts, group), name=f"alert-answer-{group}")
            self._followers.add(follower)
            follower.add_done_callback(self._followers.discard)

    async def _answer(self, alert: Alert, channel: str, thread_ts: str, group: str) -> None:
        try:
            answer = await self._slack.ask(
                alert.question, channel=channel, thread_ts=thread_ts, user="", origin="alert", alert_group=group
            )
            if answer is not None and self._after_answer is not None:
                await self._after_answer(answer)
        except OpsflowError as exc:  # the thread stands; the answer is the part that failed
            log.warning("no workflow for alert", extra={"group": group, "error": str(exc)})

    async def _update_thread(self, thread: AlertThread, alert: Alert, status: str, firing: dict[str, Any]) -> None:
        now = dt.datetime.now(dt.UTC)
        if status == thread.status and firing == thread.firing:
            return  # a repeat: nothing a person would see has changed
        if status == thread.status and (now - thread.updated_at).total_seconds() < CARD_REFRESH_S:
            # Only the set of firing alerts changed, and the card was edited moments ago: keep the state,
            # edit the card with a later change (Slack allows ~50 chat.update a minute per workspace).
            thread.firing = firing
            await self._records.save_alert_thread(thread)
            return
        flapping = (
            status == "firing"
            and thread.status == "resolved"
            and thread.resolved_at is not None
            and (now - thread.resolved_at).total_seconds() < self._cfg.flap_window_s
        )
        text, blocks = _card(alert, status, firing, flapping=flapping)
        if not await self._slack.update(thread.channel, thread.thread_ts, text, blocks):
            raise _NotPosted(f"Slack refused the update of {thread.group_key}")
        if status != thread.status and not flapping:
            note = ":white_check_mark: Resolved." if status == "resolved" else ":fire: Firing again."
            await self._slack.post(thread.channel, thread.thread_ts, note)
        thread.status, thread.firing, thread.updated_at = status, firing, now
        if status == "resolved":
            thread.resolved_at = now
        await self._records.save_alert_thread(thread)


class _NotPosted(Exception):
    """Slack did not take the message; the group is retried."""


def _card(alert: Alert, status: str, firing: dict[str, Any], *, flapping: bool) -> tuple[str, list[dict[str, Any]]]:
    """The thread's first message: the alert and where it stands now."""
    state = "flapping (fired again soon after resolving)" if flapping else status
    title = f"{_ICON[status]} {alert.name or 'Alert'} — {state}"
    facts = [f"*source:* {alert.source}"]
    if alert.severity:
        facts.append(f"*severity:* {alert.severity}")
    if status == "firing":
        facts.append(f"*firing:* {len(firing)}")
    labels = ", ".join(f"`{k}={v}`" for k, v in list(alert.labels.items())[:8])
    body = "\n".join(part for part in (alert.summary, " · ".join(facts), labels) if part)
    if alert.url:
        body += f"\n<{alert.url}|open in {alert.source}>"
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": body[:3000]}},
    ]
    return title, blocks
