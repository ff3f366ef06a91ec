"""Alert cards and alert questions: what a group shows in Slack and asks the knowledge base."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.alert_cards import MAX_LINES, MAX_QUESTION, card, common_labels, line, question
from connectors.alerts import HEARTBEATS, parse_alertmanager, parse_generic
from core.types import Alert

FIELD = Path(__file__).resolve().parents[2] / "data" / "alerts" / "field"  # copies of ../shared/field


def alert(name: str, status: str = "firing", fingerprint: str = "", **labels: str) -> Alert:
    (parsed,) = parse_generic(
        {"name": name, "status": status, "fingerprint": fingerprint or f"{name}-{labels}", "labels": labels,
         "summary": f"{name} on {labels.get('pod', 'x')}", "group": "g"}
    )  # fmt: skip
    return parsed


def firing_lines(alerts: list[Alert]) -> dict[str, str]:
    common = common_labels(alerts)
    return {a.fingerprint: line(a, common) for a in alerts if a.status == "firing"}


def body(blocks: list[dict[str, Any]]) -> str:
    return str(blocks[1]["text"]["text"])


def test_a_group_card_lists_firing_alerts_before_resolved_ones_with_counts() -> None:
    alerts = [
        alert("KubePodCrashLooping", "resolved", pod="api-0", namespace="shop"),
        alert("KubePodCrashLooping", pod="api-1", namespace="shop"),
        alert("KubeContainerOOMKilled", pod="api-2", namespace="shop"),
    ]
    title, blocks = card(alerts, firing_lines(alerts))
    assert title == ":fire: KubePodCrashLooping and 1 more — firing"
    lines = body(blocks).splitlines()
    assert "*firing:* 2" in lines[0] and "*resolved:* 1" in lines[0]
    assert lines[1].startswith(":fire: *KubePodCrashLooping* `pod=api-1`")
    assert lines[2].startswith(":fire: *KubeContainerOOMKilled* `pod=api-2`")
    assert lines[3].startswith(":white_check_mark: ~*KubePodCrashLooping* `pod=api-0`")
    assert "`namespace=shop`" in lines[4]  # shared by all: said once, not on every line


def test_a_large_or_truncated_group_says_how_many_are_not_shown() -> None:
    alerts = [alert("KubePodCrashLooping", pod=f"api-{i}") for i in range(MAX_LINES + 4)]
    _, blocks = card(alerts, firing_lines(alerts), truncated=20)
    text = body(blocks)
    assert text.count(":fire:") == MAX_LINES and "+24 not shown" in text
    assert f"*firing:* {MAX_LINES + 4 + 20}" in text  # the sender's truncated alerts fire too


def test_a_resolved_group_card_is_resolved_and_says_so_in_the_title() -> None:
    alerts = [alert("DiskFull", "resolved", host="db1")]
    title, blocks = card(alerts, {})
    assert title == ":white_check_mark: DiskFull — resolved" and "*resolved:* 1" in body(blocks)


def test_the_question_is_built_from_the_firing_alerts_names_labels_and_text_start() -> None:
    alerts = [
        alert("KubePodCrashLooping", "resolved", pod="api-0"),
        alert("KubeContainerOOMKilled", pod="api-2", namespace="shop"),
        alert("KubePodCrashLooping", pod="api-1", namespace="shop"),
    ]
    asked = question(alerts)
    assert asked is not None
    assert asked.startswith("KubeContainerOOMKilled and KubePodCrashLooping firing (pod=api-2, namespace=shop)")
    assert "api-0" not in asked  # the resolved alert is not asked about


def test_the_question_for_a_4000_character_description_is_short() -> None:
    case = json.loads((FIELD / "06-am-long-description.json").read_text())
    (parsed,) = parse_alertmanager(case["payloads"][0])
    assert len(parsed.summary) > 4000
    asked = question([parsed])
    assert asked is not None and len(asked) <= MAX_QUESTION
    assert asked.startswith("KubePodCrashLooping firing (severity=warning, team=payments, namespace=payments): Pod ")


@pytest.mark.parametrize("name", sorted(HEARTBEATS))
def test_heartbeats_are_shown_but_asked_nothing(name: str) -> None:
    beat = alert(name, severity="none")
    _, blocks = card([beat], firing_lines([beat]))
    assert "heartbeat" in body(blocks) and question([beat]) is None
    real = alert("KubeNodeNotReady", node="n1")
    assert question([beat, real]) == "KubeNodeNotReady firing (node=n1): KubeNodeNotReady on x"


def test_nothing_firing_asks_nothing() -> None:
    assert question([alert("DiskFull", "resolved")]) is None
