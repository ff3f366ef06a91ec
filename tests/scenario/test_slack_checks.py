"""Run checks from the Slack card: probes run and post in the thread, a write waits for an authorised
approval and runs once, the outcome is recorded. The real bot over HTTP, a loopback Slack Web API, a
loopback service to probe, and a stand-in ``kubectl`` program that records what it was asked to do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from bot.app import open_knowledge
from bot.ingest import ingest
from bot.slack_checks import APPROVE, REJECT, RESOLVED
from generation.rendering import RUN_CHECKS
from tests.botharness import RunningBot, running_bot
from tests.conftest import make_settings
from tests.fakes.slack import Call
from trainer.store import ExecutorRun

LEAD, ENGINEER = "U_LEAD", "U_OCE"
RUNBOOK = """# CheckoutErrorsHigh

## Meaning

The checkout service fails its health check, so customers cannot place orders.

## Diagnosis

- Check whether the checkout health check returns 503: {url}.
- Restart the checkout deployment: `kubectl rollout restart deployment/checkout -n shop`.
- Watch the checkout error rate for ten minutes and escalate to the payments team if it stays high.
"""
KUBECTL = """#!/bin/sh
echo "$@" >> "$KUBECTL_LOG"
echo "deployment.apps/checkout restarted"
"""


@pytest.fixture
async def service() -> AsyncIterator[str]:
    """The checkout service, failing its health check."""

    async def health(request: web.Request) -> web.Response:
        return web.Response(status=503, text="upstream connect error")

    app = web.Application()
    app.router.add_get("/health", health)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    yield str(server.make_url("/health"))
    await server.close()


@pytest.fixture
async def bot(tmp_path: Path, model_cache: Path, service: str) -> AsyncIterator[tuple[RunningBot, Path]]:
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    (runbooks / "CheckoutErrorsHigh.md").write_text(RUNBOOK.format(url=service))
    kb = make_settings(tmp_path / "kb", model_cache)
    async with open_knowledge(kb) as knowledge:
        report = await ingest([runbooks], knowledge.builder, max_bytes=100_000)
        assert report.added == ["CheckoutErrorsHigh.md"]
    bin_dir, log = tmp_path / "bin", tmp_path / "kubectl.log"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(KUBECTL)
    (bin_dir / "kubectl").chmod(0o755)
    tools = {
        "http_probe_hosts": ("127.0.0.1",),
        "command_env": {"PATH": f"{bin_dir}:/usr/bin:/bin", "KUBECTL_LOG": str(log)},
        "approvers": {"C1": (LEAD,)},
    }
    async with running_bot(kb, tmp_path / "records.sqlite", tools=tools) as running:
        yield running, log


def click(action_id: str, value: str, user: str, message_ts: str = "1.0") -> dict[str, Any]:
    return {
        "type": "block_actions",
        "user": {"id": user},
        "trigger_id": "trigger-1",
        "channel": {"id": "C1"},
        "message": {"ts": message_ts, "thread_ts": "1700000000.000001"},
        "actions": [{"action_id": action_id, "block_id": "b", "value": value, "type": "button"}],
    }


def buttons(call: Call) -> dict[str, str]:
    return {
        e["action_id"]: e["value"]
        for block in call.args.get("blocks") or []
        if block["type"] == "actions"
        for e in block["elements"]
    }


async def state_message(running: RunningBot, count: int) -> Call:
    """The ``count``-th message carrying check buttons."""
    calls = await running.slack.wait_for("chat.postMessage", count=0)
    for _ in range(600):  # up to 30 s: a run on a loaded 2-core machine
        calls = [c for c in running.slack.of("chat.postMessage") if set(buttons(c)) & {APPROVE, RESOLVED}]
        if len(calls) >= count:
            return calls[count - 1]
        await asyncio.sleep(0.05)
    raise AssertionError(
        f"no state message #{count}: {[c.args.get('text') for c in running.slack.of('chat.postMessage')]}"
    )


async def test_checks_run_from_the_card_and_the_write_waits_for_one_authorised_approval(
    bot: tuple[RunningBot, Path],
) -> None:
    running, kubectl_log = bot
    mention = {"type": "app_mention", "user": ENGINEER, "ts": "1700000000.000001", "channel": "C1"}
    mention["text"] = "<@UBOT> CheckoutErrorsHigh: the checkout health check fails"
    assert (await running.client.event(mention, "Ev1")).status == 200
    card = (await running.slack.wait_for("chat.update"))[0]
    answer_id = buttons(card)[RUN_CHECKS]

    assert (await running.client.interaction(click(RUN_CHECKS, answer_id, ENGINEER))).status == 200
    waiting = await state_message(running, 1)
    value = buttons(waiting)[APPROVE]
    assert value.endswith("|s2") and buttons(waiting)[REJECT] == value
    assert "kubectl rollout restart deployment/checkout -n shop" in waiting.args["blocks"][0]["text"]["text"]
    progress = running.slack.of("chat.postMessage")[-2:]
    thread_text = "\n".join(str(c.args.get("text")) for c in [*progress, *running.slack.of("chat.update")])
    assert "http_probe" in thread_text and "→ *yes*" in thread_text and "503 == 503" in thread_text
    assert not kubectl_log.exists()

    # Someone who is not an approver: told so, nothing runs.
    await running.client.interaction(click(APPROVE, value, ENGINEER, waiting.args.get("ts", "1.0")))
    refusal = (await running.slack.wait_for("chat.postEphemeral"))[0]
    assert refusal.args["user"] == ENGINEER and "not an approver" in refusal.args["text"]
    assert not kubectl_log.exists()

    # The approver double-clicks: the write runs once.
    await asyncio.gather(*(running.client.interaction(click(APPROVE, value, LEAD)) for _ in range(2)))
    done = await state_message(running, 2)
    assert RESOLVED in buttons(done)
    await running.slack.wait_for("chat.postEphemeral", count=2)  # the second click is told it was already done
    await asyncio.sleep(0.3)
    assert kubectl_log.read_text().splitlines() == ["rollout restart deployment/checkout -n shop"]
    records = running.bot.kb.records
    audit = await records.audit_log(action="write_approved")
    assert [(a.actor, a.detail["command"], a.detail["outcome"]) for a in audit] == [
        (LEAD, "kubectl rollout restart deployment/checkout -n shop", "ok")
    ]

    await running.client.interaction(click(RESOLVED, buttons(done)[RESOLVED], ENGINEER))
    for _ in range(100):
        run = await records.transaction(lambda s: s.scalars(select(ExecutorRun)).one())
        if run.outcome:
            break
        await asyncio.sleep(0.05)
    assert run.outcome == "resolved" and run.state == "finished" and run.channel == "C1"
    kinds = [e["kind"] for e in run.steps["events"]]
    assert kinds[:4] == ["started", "probe", "decision", "approval_requested"]
    assert kinds[-5:] == ["approved", "write", "manual", "finished", "outcome"]


async def test_an_alert_in_a_channel_that_opted_in_gets_its_checks_run_automatically(
    tmp_path: Path, model_cache: Path, service: str
) -> None:
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    (runbooks / "CheckoutErrorsHigh.md").write_text(RUNBOOK.format(url=service))
    kb = make_settings(tmp_path / "kb", model_cache)
    async with open_knowledge(kb) as knowledge:
        await ingest([runbooks], knowledge.builder, max_bytes=100_000)
    tools = {"http_probe_hosts": ("127.0.0.1",), "auto_check_channels": ("CALERTS",)}
    async with running_bot(kb, tmp_path / "records.sqlite", tools=tools) as running:
        alert = {"name": "CheckoutErrorsHigh", "status": "firing", "summary": "checkout health check fails"}
        response = await running.http.post(
            f"{running.url}/alerts/generic", json=alert, headers={"Authorization": "Bearer alert-token"}
        )
        assert response.status == 200
        waiting = await state_message(running, 1)  # the read step ran; the write waits for an approver
        assert waiting.args["channel"] == "CALERTS" and APPROVE in buttons(waiting)
        texts = "\n".join(str(c.args.get("text")) for c in running.slack.of("chat.postMessage"))
        assert "http_probe" in texts
