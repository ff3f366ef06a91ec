"""An Alertmanager storm for ``bench.bot_load``: the notifications, a sender that behaves like Alertmanager,
and the Slack rate figures read off the fake Web API's call log.

The plan is deterministic (seeded). Each group is one Alertmanager aggregation group (``groupKey``) with a
few alert instances that join over time, one instance of some groups resolves midway, and most groups end
with a notification where every alert is resolved. Like Alertmanager, a group's notifications are sent in
order, one at a time: a refused one (503) is resent after ``Retry-After`` before the group's next is sent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import itertools
import random
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.fakes.slack import Call

NAMES = (
    ("KubePodCrashLooping", "Pod {ns}/api-{i} is crash looping"),
    ("KubeNodeNotReady", "Node worker-{i} has been unready for more than 15 minutes"),
    ("KubeContainerOOMKilled", "Container app in {ns}/worker-{i} was OOM killed"),
    ("PostgresReplicationLagHigh", "Replica pg-{i} is 240 s behind the primary"),
    ("PostgresTooManyConnections", "pg-{i} uses 97% of max_connections"),
    ("RedisEvictionsHigh", "redis-{i} evicts keys under memory pressure"),
    ("KafkaConsumerGroupLagHigh", "Consumer group billing-{i} lags 120k messages"),
    ("RabbitMQQueueBacklogHigh", "Queue orders-{i} holds 80k messages"),
    ("CoreDNSErrorsHigh", "CoreDNS SERVFAIL rate is 12% on dns-{i}"),
    ("IngressHTTP5xxRateHigh", "Ingress shop-{i} returns 7% 5xx"),
)
START = dt.datetime(2026, 11, 22, 5, 0, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Notification:
    group: str
    at: float  # seconds after the storm starts
    payload: dict[str, Any]

    @property
    def alerts(self) -> list[tuple[str, str]]:
        """(fingerprint, status) of each alert it carries."""
        return [(a["fingerprint"], a["status"]) for a in self.payload["alerts"]]


@dataclass(frozen=True)
class Plan:
    notifications: list[Notification]
    final: dict[str, tuple[str, frozenset[str]]]  # group → (status, fingerprints still firing) after the last


def plan(total: int, groups: int, seconds: float, seed: int = 7) -> Plan:
    """``total`` notifications over ``groups`` groups, spread over ``seconds``."""
    rng = random.Random(seed)
    per_group = [total // groups + (1 if g < total % groups else 0) for g in range(groups)]
    notifications: list[Notification] = []
    final = {}
    for g, count in enumerate(per_group):
        name, summary = NAMES[g % len(NAMES)]
        ns = f"team-{g:02d}"
        key = f'{{}}/{{severity=~"warning|critical"}}:{{alertname="{name}", namespace="{ns}"}}'
        instances = rng.randint(2, 6)
        joins = sorted([0] + [rng.randrange(max(count - 1, 1)) for _ in range(instances - 1)])
        early_resolve = rng.randrange(1, max(count - 1, 2)) if rng.random() < 0.3 and instances > 2 else None
        resolves_at_end = rng.random() < 0.7
        interval = seconds / count
        offset = rng.uniform(0, interval)
        for i in range(count):
            last = i == count - 1
            alerts = []
            for j in range(instances):
                if joins[j] > i:
                    continue
                resolved = (last and resolves_at_end) or (early_resolve is not None and j == 1 and i >= early_resolve)
                alerts.append(_alert(name, summary, ns, j, g, "resolved" if resolved else "firing"))
            payload = _notification(key, name, ns, alerts)
            at = min(offset + i * interval + rng.uniform(-0.2, 0.2) * interval, seconds)
            notifications.append(Notification(key, max(at, 0.0), payload))
            if last:
                firing = frozenset(a["fingerprint"] for a in alerts if a["status"] == "firing")
                final[key] = ("firing" if firing else "resolved", firing)
    notifications.sort(key=lambda n: n.at)
    return Plan(notifications, final)


def _alert(name: str, summary: str, ns: str, j: int, g: int, status: str) -> dict[str, Any]:
    labels = {"alertname": name, "namespace": ns, "severity": "critical", "instance": f"10.0.{g}.{j}:9100"}
    ends = START + dt.timedelta(minutes=30)
    return {
        "status": status,
        "labels": labels,
        "annotations": {
            "summary": summary.format(ns=ns, i=j),
            "runbook_url": f"https://runbooks.example.com/{name.lower()}",
        },
        "startsAt": (START + dt.timedelta(seconds=j)).isoformat().replace("+00:00", "Z"),
        "endsAt": ends.isoformat().replace("+00:00", "Z") if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": f"http://prometheus.local/graph?g0.expr=ALERTS%7Balertname%3D%22{name}%22%7D",
        "fingerprint": hashlib.sha256(f"{name}/{ns}/{j}".encode()).hexdigest()[:16],  # Alertmanager's are 16 hex
    }


def _notification(key: str, name: str, ns: str, alerts: list[dict[str, Any]]) -> dict[str, Any]:
    firing = any(a["status"] == "firing" for a in alerts)
    return {
        "version": "4",
        "groupKey": key,
        "truncatedAlerts": 0,
        "status": "firing" if firing else "resolved",
        "receiver": "opsflow",
        "groupLabels": {"alertname": name, "namespace": ns},
        "commonLabels": {"alertname": name, "namespace": ns, "severity": "critical"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.local:9093",
        "alerts": alerts,
    }


@dataclass
class Sent:
    """What the sender saw: every response, and the alerts of each accepted notification."""

    statuses: Counter[int] = field(default_factory=Counter)
    accepted: list[Notification] = field(default_factory=list)
    gave_up: list[Notification] = field(default_factory=list)
    first_at: float = 0.0
    last_accepted_at: float = 0.0


async def send(
    http: aiohttp.ClientSession, urls: Sequence[str], token: str, storm: Plan, *, max_attempts: int = 30
) -> Sent:
    """Send the storm, group by group in order, resending 503s after their Retry-After. With several
    ``urls`` (replicas behind a load balancer), each attempt goes to the next one: a group's
    notifications alternate between replicas, and a refused one is resent to another."""
    sent = Sent(first_at=time.monotonic())
    by_group: dict[str, list[Notification]] = defaultdict(list)
    for n in storm.notifications:
        by_group[n.group].append(n)
    headers = {"Authorization": f"Bearer {token}"}

    async def group_sender(start: int, notifications: list[Notification]) -> None:
        turn = itertools.count(start)
        for n in notifications:
            await asyncio.sleep(max(0.0, sent.first_at + n.at - time.monotonic()))
            for _ in range(max_attempts):
                async with http.post(urls[next(turn) % len(urls)], json=n.payload, headers=headers) as response:
                    await response.read()
                    sent.statuses[response.status] += 1
                    if response.status // 100 == 2:
                        sent.accepted.append(n)
                        sent.last_accepted_at = time.monotonic()
                        break
                    if response.status not in (429, 503):
                        sent.gave_up.append(n)  # Alertmanager does not retry other errors
                        break
                    await asyncio.sleep(float(response.headers.get("Retry-After", "10")))
            else:
                sent.gave_up.append(n)

    async with asyncio.TaskGroup() as tasks:
        for start, notifications in enumerate(by_group.values()):
            tasks.create_task(group_sender(start, notifications))
    return sent


def max_in_window(times: list[float], window: float) -> int:
    """The most events in any half-open window (t - window, t] ending at an event."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def rates(calls: list[Call]) -> dict[str, Any]:
    """Calls by method, the busiest minute per method, and chat.postMessage per channel per second."""
    by_method: dict[str, list[float]] = defaultdict(list)
    posts: dict[str, list[float]] = defaultdict(list)
    for c in calls:
        by_method[c.method].append(c.at)
        if c.method == "chat.postMessage":
            posts[str(c.args.get("channel"))].append(c.at)
    gaps = [b - a for ts in posts.values() for a, b in zip(sorted(ts), sorted(ts)[1:], strict=False)]
    return {
        "total": {m: len(ts) for m, ts in sorted(by_method.items())},
        "per_minute": {m: max_in_window(ts, 60.0) for m, ts in sorted(by_method.items())},
        "post_per_s_per_channel": max((max_in_window(ts, 1.0) for ts in posts.values()), default=0),
        "min_post_gap_s": round(min(gaps), 3) if gaps else None,
    }
