"""Alert groups as senders really send them, against the running bot and a loopback Slack: the field cases
of ``tests/data/alerts/field`` (copies of ``../shared/field``) replayed as written, and other instances of
each kind — long texts, groups of several alerts, meta-alerts, one group key from several senders."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.alert_cards import MAX_QUESTION
from bot.records import AlertThread
from core.settings import Settings
from tests.botharness import ALERT_TOKEN, RunningBot, running_bot
from tests.fakes.slack import Call

DATA = Path(__file__).resolve().parents[1] / "data" / "alerts"
PD_SECRET = "pd-groups-secret"
LONG = "Pod restarts exceeded threshold on these pods: " + ", ".join(f"payments/api-{i:04d}-x" for i in range(400))


def load(name: str) -> dict[str, Any]:
    return dict(json.loads((DATA / name).read_text()))


@pytest.fixture
async def bot(sample_kb: Settings, tmp_path: Path) -> Any:
    async with running_bot(sample_kb, tmp_path / "records.sqlite", alerts={"pagerduty_secret": PD_SECRET}) as running:
        yield running


async def send(bot: RunningBot, payload: Any, endpoint: str = "/alerts/alertmanager") -> None:
    body = json.dumps(payload).encode()
    if endpoint.endswith("pagerduty"):
        headers = {"X-PagerDuty-Signature": "v1=" + hmac.new(PD_SECRET.encode(), body, hashlib.sha256).hexdigest()}
    else:
        headers = {"Authorization": f"Bearer {ALERT_TOKEN}"}
    async with bot.http.post(f"{bot.url}{endpoint}", data=body, headers=headers) as response:
        assert response.status == 200, await response.text()


async def replay(bot: RunningBot, case: dict[str, Any]) -> None:
    for payload in case["payloads"]:
        await send(bot, payload, case["endpoint"])
    await bot.bot.alerts.idle()


async def threads(bot: RunningBot) -> list[AlertThread]:
    query = select(AlertThread).order_by(AlertThread.created_at)
    return await bot.bot.kb.records.transaction(lambda s: list(s.scalars(query)))


def roots(bot: RunningBot) -> list[Call]:
    return [c for c in bot.slack.of("chat.postMessage") if not c.args.get("thread_ts")]


def replies(bot: RunningBot, thread: AlertThread) -> list[Call]:
    return [c for c in bot.slack.of("chat.postMessage") if c.args.get("thread_ts") == thread.thread_ts]


def card_text(call: Call) -> str:
    return str(call.args["blocks"][1]["text"]["text"])


async def asked(bot: RunningBot, thread: AlertThread) -> list[str]:
    """What the bot asked its knowledge base in the thread (one question per workflow)."""
    return [i.query for i in await bot.bot.kb.records.thread_history(thread.channel, thread.thread_ts)]


# --- kind 4: alerts are not held to the limit meant for people ----------------------------------


def grafana_long() -> dict[str, Any]:
    payload = load("grafana.json")
    payload["alerts"][0]["annotations"]["summary"] = LONG
    return payload


def pagerduty_long() -> dict[str, Any]:
    payload = load("pagerduty_triggered.json")
    payload["event"]["data"]["title"] = "Checkout error rate above 5%: " + LONG
    return payload


@pytest.mark.parametrize(
    ("payload", "endpoint", "name"),
    [
        (load("field/06-am-long-description.json")["payloads"][0], "/alerts/alertmanager", "KubePodCrashLooping"),
        (grafana_long(), "/alerts/grafana", "High replication lag"),
        (pagerduty_long(), "/alerts/pagerduty", "Checkout error rate above 5%"),
        ({"name": "DiskFull", "summary": LONG, "labels": {"host": "db1"}}, "/alerts/generic", "DiskFull"),
    ],
    ids=["field-06-alertmanager", "grafana", "pagerduty", "generic"],
)
async def test_an_alert_with_a_long_text_gets_its_card_and_a_workflow(
    bot: RunningBot, payload: dict[str, Any], endpoint: str, name: str
) -> None:
    assert len(json.dumps(payload)) > 4000
    await send(bot, payload, endpoint)
    await bot.bot.alerts.idle()
    (root,) = roots(bot)
    (thread,) = await threads(bot)
    assert name in root.args["blocks"][0]["text"]["text"]
    (workflow,) = replies(bot, thread)
    assert workflow.args["blocks"][0]["type"] == "header" and "under 4,000" not in json.dumps(workflow.args)
    (question,) = await asked(bot, thread)
    assert question.startswith(name) and len(question) <= MAX_QUESTION


# --- kind 5 at the alert card: outside text shows literally ------------------------------------


async def test_field_07_control_characters_in_annotations_and_labels_show_literally(bot: RunningBot) -> None:
    await replay(bot, load("field/07-am-mrkdwn-control-chars.json"))
    (root,) = roots(bot)
    text = card_text(root)
    assert "Memory &lt; 10% left on db-7 (threshold &gt; 90%) &amp; swap in use" in text
    assert "`le=&lt;0.5`" in text
    assert "+%2F+node_memory_MemTotal_bytes+%3C+0.1&amp;g0.tab=1|open in alertmanager>" in text
    assert "< 10%" not in text and "> 90%" not in text and "& swap" not in text


async def test_slack_control_sequences_in_an_annotation_ping_no_one(bot: RunningBot) -> None:
    await send(
        bot, {"name": "DiskFull", "summary": "<!here> <@U0ADMIN> see <https://evil.example|this>"}, "/alerts/generic"
    )
    await bot.bot.alerts.idle()
    text = card_text(roots(bot)[0])
    assert "&lt;!here&gt; &lt;@U0ADMIN&gt; see &lt;https://evil.example|this&gt;" in text and "<!" not in text


# --- kind 6: a thread is keyed by source, sender and routed channel -----------------------------


async def test_field_08_one_group_key_from_two_clusters_is_two_threads_in_their_channels(
    sample_kb: Settings, tmp_path: Path
) -> None:
    case = load("field/08-am-groupkey-two-clusters.json")
    async with running_bot(sample_kb, tmp_path / "r.sqlite", alerts={"routes": case["routes"]}) as bot:
        await replay(bot, case)
        assert sorted(c.args["channel"] for c in roots(bot)) == ["C0PROD", "C0STAGING"]
        saved = {t.channel: t for t in await threads(bot)}
        assert sorted(saved) == ["C0PROD", "C0STAGING"]
        assert "in staging" in card_text(next(c for c in roots(bot) if c.args["channel"] == "C0STAGING"))
        assert "in prod" in card_text(next(c for c in roots(bot) if c.args["channel"] == "C0PROD"))


async def test_each_alert_of_a_group_is_routed_not_the_first(sample_kb: Settings, tmp_path: Path) -> None:
    routes = [{"match": {"team": "db"}, "channel": "CDB"}, {"match": {"team": "web"}, "channel": "CWEB"}]
    payload = load("alertmanager.json")
    for entry, team in zip(payload["alerts"], ("db", "web"), strict=True):
        entry["status"], entry["labels"]["team"] = "firing", team
    async with running_bot(sample_kb, tmp_path / "r.sqlite", alerts={"routes": routes, "answer": False}) as bot:
        await send(bot, payload)
        await bot.bot.alerts.idle()
        assert sorted(c.args["channel"] for c in roots(bot)) == ["CDB", "CWEB"]
        assert all("*firing:* 1" in card_text(c) for c in roots(bot))


async def test_one_group_key_from_two_grafana_orgs_is_two_threads(bot: RunningBot) -> None:
    first, second = load("grafana.json"), load("grafana.json")
    second["orgId"] = 2
    second["alerts"][0]["fingerprint"] = "b0b0b0b0b0b0b0b0"
    for payload in (first, second, first):
        await send(bot, payload, "/alerts/grafana")
    await bot.bot.alerts.idle()
    assert len(roots(bot)) == 2 and len(await threads(bot)) == 2


async def test_notifications_of_a_new_group_arriving_together_open_one_thread(bot: RunningBot) -> None:
    payloads = []
    for i in range(8):  # alerts joining one new group, sent at once: the workers of one process race for it
        payload = load("alertmanager.json")
        payload["alerts"] = [copy.deepcopy(payload["alerts"][0]) for _ in range(i + 1)]
        for j, entry in enumerate(payload["alerts"]):
            entry["fingerprint"], entry["labels"]["instance"] = f"fp{j}", f"10.0.0.{j}:443"
        payloads.append(payload)
    for _ in range(3):
        await asyncio.gather(*(send(bot, payload) for payload in payloads))
    await bot.bot.alerts.idle()
    assert len(roots(bot)) == 1
    (thread,) = await threads(bot)
    assert len(thread.firing) == 8


# --- kind 7: a notification is shown and answered as its group ---------------------------------


def mixed_group(truncated: int = 0) -> dict[str, Any]:
    """One Alertmanager notification: two alerts of different names firing, one resolved (sent last)."""
    payload = load("alertmanager.json")
    firing, resolved = payload["alerts"]
    oom = copy.deepcopy(firing)
    oom["labels"] |= {"alertname": "KubeContainerOOMKilled", "pod": "api-7"}
    oom["annotations"] = {"summary": "Container app in shop/api-7 was OOM killed"}
    oom["fingerprint"] = "0f0f0f0f0f0f0f0f"
    payload["alerts"] = [firing, oom, resolved]
    payload["truncatedAlerts"] = truncated
    return payload


async def test_a_group_card_lists_its_alerts_and_the_workflow_is_for_the_firing_ones(bot: RunningBot) -> None:
    await send(bot, mixed_group(truncated=4))
    await bot.bot.alerts.idle()
    (root,) = roots(bot)
    assert root.args["blocks"][0]["text"]["text"] == ":fire: KubeAPIDown and 1 more — firing"
    lines = card_text(root).splitlines()
    assert "*firing:* 6" in lines[0] and "*resolved:* 1" in lines[0]  # 2 shown + 4 the sender truncated
    assert [line.split()[0] for line in lines[1:4]] == [":fire:", ":fire:", ":white_check_mark:"]
    assert "+4 not shown" in lines
    (thread,) = await threads(bot)
    assert sorted(thread.firing) == ["0f0f0f0f0f0f0f0f", "5f1d2c3b4a596877"]
    (question,) = await asked(bot, thread)
    assert question.startswith("KubeAPIDown and KubeContainerOOMKilled firing (job=apiserver,")
    assert "apiserver-2" not in question  # the resolved one


async def test_a_group_whose_only_new_alert_is_resolved_opens_a_resolved_card_without_workflow(bot: RunningBot) -> None:
    payload = load("alertmanager.json")
    payload["alerts"] = payload["alerts"][1:]
    await send(bot, payload)
    await bot.bot.alerts.idle()
    (root,) = roots(bot)
    assert root.args["blocks"][0]["text"]["text"].endswith("— resolved")
    (thread,) = await threads(bot)
    assert replies(bot, thread) == [] and await asked(bot, thread) == []


async def test_a_grafana_group_resolving_one_of_two_edits_the_card_to_list_both(bot: RunningBot) -> None:
    payload = load("grafana.json")
    second = copy.deepcopy(payload["alerts"][0])
    second["labels"]["instance"], second["fingerprint"] = "db-replica-2:9187", "c0c0c0c0c0c0c0c0"
    payload["alerts"].append(second)
    await send(bot, payload, "/alerts/grafana")
    await bot.bot.alerts.idle()
    payload["alerts"][0]["status"] = "resolved"
    await send(bot, payload, "/alerts/grafana")
    await bot.bot.alerts.idle()
    (thread,) = await threads(bot)
    assert list(thread.firing) == ["c0c0c0c0c0c0c0c0"] and thread.status == "firing"


# --- kind 8: meta-alerts are not taken literally ------------------------------------------------


async def test_grafana_no_data_names_the_real_rule_and_says_it_returned_no_data(bot: RunningBot) -> None:
    payload = load("grafana.json")
    payload["alerts"][0]["labels"] = {
        "alertname": "DatasourceNoData",
        "rulename": "High replication lag",
        "datasource_uid": "prom-1",
        "ref_id": "A",
        "team": "db",
    }
    payload["alerts"][0]["annotations"] = {}
    await send(bot, payload, "/alerts/grafana")
    await bot.bot.alerts.idle()
    (root,) = roots(bot)
    assert root.args["blocks"][0]["text"]["text"] == ":fire: High replication lag — firing"
    assert "High replication lag returned no data (DatasourceNoData)" in card_text(root)
    (thread,) = await threads(bot)
    (question,) = await asked(bot, thread)
    assert question.startswith("High replication lag firing") and "returned no data" in question


@pytest.mark.parametrize(
    ("payload", "endpoint"),
    [
        ({"name": "Watchdog", "labels": {"severity": "none"}}, "/alerts/generic"),
        ({"name": "DeadMansSwitch", "summary": "Alerting pipeline heartbeat"}, "/alerts/generic"),
        ("Watchdog", "/alerts/alertmanager"),
        ("InfoInhibitor", "/alerts/grafana"),
    ],
)
async def test_heartbeats_open_a_card_but_post_no_workflow(bot: RunningBot, payload: Any, endpoint: str) -> None:
    if isinstance(payload, str):
        name, payload = payload, load("alertmanager.json" if endpoint.endswith("alertmanager") else "grafana.json")
        payload["alerts"] = payload["alerts"][:1]
        payload["alerts"][0]["labels"]["alertname"] = name
    await send(bot, payload, endpoint)
    await bot.bot.alerts.idle()
    (root,) = roots(bot)
    assert "heartbeat" in card_text(root)
    (thread,) = await threads(bot)
    assert replies(bot, thread) == [] and await asked(bot, thread) == []


async def test_a_heartbeat_in_a_group_with_a_real_alert_is_not_asked_about(bot: RunningBot) -> None:
    payload = load("alertmanager.json")
    beat = copy.deepcopy(payload["alerts"][0])
    beat["labels"] = {"alertname": "InfoInhibitor", "severity": "none"}
    beat["fingerprint"] = "1nf01nf01nf01nf0"
    payload["alerts"] = [beat, payload["alerts"][0]]
    await send(bot, payload)
    await bot.bot.alerts.idle()
    (thread,) = await threads(bot)
    (question,) = await asked(bot, thread)
    assert question.startswith("KubeAPIDown firing") and "InfoInhibitor" not in question


async def test_the_lead_alerts_labels_fill_the_workflows_checks(bot: RunningBot) -> None:
    payload = load("alertmanager.json")
    payload["alerts"] = payload["alerts"][:1]
    payload["alerts"][0]["labels"] = {
        "alertname": "IngressHTTP5xxRateHigh",
        "image": "registry.example.invalid/" + "shop/" * 50 + "cart:1.2.3",  # pushes the rest out of the question
        "namespace": "shop-ns",
        "app": "cart",
    }
    payload["alerts"][0]["annotations"] = {"summary": "Ingress shop returns 7% 5xx"}
    await send(bot, payload)
    await bot.bot.alerts.idle()
    (thread,) = await threads(bot)
    (answer,) = await bot.bot.kb.records.thread_history(thread.channel, thread.thread_ts)
    assert "shop-ns" not in answer.query
    assert answer.context["known"]["namespace"] == "shop-ns" and answer.context["known"]["app"] == "cart"
