"""Prometheus → Alertmanager → webhook, with the real binaries: what arrives parses as the rule's alert."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from connectors.alerts import parse_alertmanager, verify_bearer
from core.types import Alert
from tests import promstack
from tests.promstack import alertmanager, metrics_endpoint, off_loop, prometheus

TOKEN = "alert-hook-token"
RULES = """
groups:
  - name: opsflow-test
    rules:
      - alert: OpsflowTestValueHigh
        expr: opsflow_test_value > 1
        for: 0s
        labels:
          severity: warning
          team: db
        annotations:
          summary: "opsflow_test_value is {{ $value }}"
          runbook: https://runbooks.example/opsflow-test
"""


class Receiver:
    """The webhook end: a loopback aiohttp server queueing each authorised notification's body."""

    def __init__(self) -> None:
        self.bodies: asyncio.Queue[Any] = asyncio.Queue()
        self.refused = 0
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self.server = TestServer(app, host="127.0.0.1")

    async def _hook(self, request: web.Request) -> web.Response:
        if not verify_bearer(request.headers.get("Authorization"), SecretStr(TOKEN)):
            self.refused += 1
            return web.Response(status=401)
        await self.bodies.put(await request.json())
        return web.Response(status=200)

    async def next_alert(self, status: str, timeout_s: float) -> Alert:
        """The first alert with ``status`` in the notifications still to come (earlier ones are skipped)."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    alerts = parse_alertmanager(await self.bodies.get())
                    assert len(alerts) == 1, alerts
                    if alerts[0].status == status:
                        return alerts[0]
        except TimeoutError:
            pytest.fail(f"no {status} notification within {timeout_s}s ({self.refused} refused: bad token)")


async def test_a_firing_rule_arrives_as_an_alert_and_its_resolution_follows(tmp_path: Path) -> None:
    receiver = Receiver()
    await receiver.server.start_server()
    try:
        hook = str(receiver.server.make_url("/hook"))
        async with (
            off_loop(metrics_endpoint()) as metrics,
            off_loop(alertmanager(tmp_path, webhook_url=hook, bearer_token=TOKEN, resolve_timeout="10s")) as am,
            off_loop(prometheus(tmp_path, scrape_targets=[metrics.target], rules_yaml=RULES, alertmanager_url=am.url)),
        ):
            metrics.set("opsflow_test_value", 2)
            firing = await receiver.next_alert("firing", timeout_s=20)
            assert firing.source == "alertmanager"
            assert firing.name == "OpsflowTestValueHigh"
            assert firing.severity == "warning"
            assert firing.summary == "opsflow_test_value is 2"
            assert firing.labels["team"] == "db"
            assert firing.labels["job"] == "opsflow-test"
            assert firing.annotations["runbook"] == "https://runbooks.example/opsflow-test"
            # Scoped by the sender: "<externalURL> <groupKey>" (two clusters may share a groupKey).
            sender, key = firing.group_key.split(" ", 1)
            assert sender.startswith("http") and key == '{}:{alertname="OpsflowTestValueHigh"}'
            assert firing.starts_at is not None and firing.ends_at is None
            assert firing.url.startswith("http://")

            metrics.set("opsflow_test_value", 0)
            resolved = await receiver.next_alert("resolved", timeout_s=20)
            assert (resolved.fingerprint, resolved.group_key) == (firing.fingerprint, firing.group_key)
            assert resolved.ends_at is not None and resolved.ends_at >= firing.starts_at
        assert receiver.refused == 0
    finally:
        await receiver.server.close()


def test_prometheus_scrapes_the_metrics_endpoint_and_sees_changes(tmp_path: Path) -> None:
    with metrics_endpoint() as metrics, prometheus(tmp_path, scrape_targets=[metrics.target]) as prom:
        metrics.set("opsflow_test_value", 3, instance_role="primary")
        assert _poll_query(prom.url, 'opsflow_test_value{instance_role="primary"}', "3")
        metrics.set("opsflow_test_value", 5, instance_role="primary")
        assert _poll_query(prom.url, 'opsflow_test_value{instance_role="primary"}', "5")


def test_a_missing_binary_skips_with_the_package_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(promstack, "_SYSTEM_BIN", tmp_path)
    with pytest.raises(pytest.skip.Exception, match="apt-get install prometheus-alertmanager"):
        alertmanager(tmp_path, webhook_url="http://127.0.0.1:1/").__enter__()


def _poll_query(base_url: str, promql: str, expected: str, timeout_s: float = 15.0) -> bool:
    """Whether an instant query returns ``expected`` within the timeout (the first scrape comes ~5 s after start)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    url = f"{base_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with opener.open(url, timeout=5) as response:
            result = json.load(response)["data"]["result"]
        if result and result[0]["value"][1] == expected:
            return True
        time.sleep(0.2)
    return False
