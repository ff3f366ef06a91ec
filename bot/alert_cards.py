"""What an alert group shows in Slack and asks the knowledge base: pure functions, no I/O.

A group's card lists its alerts, firing ones first, up to ``MAX_LINES`` (the rest, and the alerts
the sender truncated, as "+N not shown"). The question for the workflow is built from the firing
alerts' names, labels and the start of their text, never longer than ``MAX_QUESTION``: an alert's
description may be a 4,000-character templated list, and retrieval reads only the start anyway.
Heartbeats (``connectors.alerts.is_heartbeat``) are shown but asked nothing.

Every string that came with an alert is escaped (``&``, ``<``, ``>``) where it enters mrkdwn, so a
summary saying "< 10% left" or an annotation holding ``<!here>`` shows literally and pings no one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from connectors.alerts import is_heartbeat
from core.types import Alert

MAX_LINES = 10
MAX_QUESTION = 600  # characters
_LINE_TEXT = 160  # characters of an alert's summary on its card line
_ICON = {"firing": ":fire:", "resolved": ":white_check_mark:"}
_QUIET_LABELS = {"alertname", "severity"}  # on the title or the facts already


def line(alert: Alert, common: Mapping[str, str]) -> str:
    """One alert on a card: its name, the labels that set it apart from ``common``, its summary's start."""
    own = [_pair(k, v) for k, v in alert.labels.items() if k not in _QUIET_LABELS and common.get(k) != v][:3]
    summary = _mrkdwn(_cut(alert.summary, _LINE_TEXT))
    return " ".join(part for part in (f"*{_mrkdwn(alert.name)}*", *own, summary and f"— {summary}") if part)


def common_labels(alerts: Sequence[Alert]) -> dict[str, str]:
    """The label pairs every one of ``alerts`` has."""
    if not alerts:
        return {}
    pairs = set(alerts[0].labels.items())
    for alert in alerts[1:]:
        pairs &= set(alert.labels.items())
    return {k: v for k, v in alerts[0].labels.items() if (k, v) in pairs}


def card(
    alerts: Sequence[Alert],
    firing: Mapping[str, str],
    *,
    truncated: int = 0,
    flapping: bool = False,
) -> tuple[str, list[dict[str, Any]]]:
    """The thread's first message: (fallback text, blocks).

    ``alerts`` are the notification's alerts (the latest state of each); ``firing`` maps the
    fingerprint of every alert of the group still firing to its card line (see ``line``), and
    ``truncated`` counts alerts the sender left out.
    """
    status = "firing" if firing else "resolved"
    resolved = [a for a in alerts if a.status == "resolved" and a.fingerprint not in firing]
    common = common_labels(alerts)
    lines = [f":fire: {text}" for text in firing.values()]
    lines += [f":white_check_mark: ~{line(a, common)}~" for a in resolved]
    hidden = max(len(lines) - MAX_LINES, 0) + truncated
    lead = next((a for a in alerts if a.fingerprint in firing and not is_heartbeat(a)), None) or alerts[-1]
    names = list(dict.fromkeys(a.name for a in alerts if a.fingerprint in firing) or [lead.name])
    title_name = names[0] + (f" and {len(names) - 1} more" if len(names) > 1 else "")
    state = "flapping (fired again soon after resolving)" if flapping else status
    title = f"{_ICON[status]} {title_name or 'Alert'} — {state}"
    facts = [f"*source:* {lead.source}"]
    if lead.severity:
        facts.append(f"*severity:* {_mrkdwn(lead.severity)}")
    facts.append(f"*firing:* {len(firing) + (truncated if firing else 0)}")
    if resolved:
        facts.append(f"*resolved:* {len(resolved)}")
    shared = ", ".join(_pair(k, v) for k, v in list(common.items())[:8] if k != "alertname")
    parts = [" · ".join(facts), *lines[:MAX_LINES]]
    if hidden:
        parts.append(f"+{hidden} not shown")
    if shared:
        parts.append(shared)
    if firing and all(is_heartbeat(a) for a in alerts if a.fingerprint in firing):
        parts.append("_A heartbeat: it fires all the time to show that alerting works. No workflow needed._")
    body = _cut("\n".join(parts), 2900)
    if lead.url:
        body += f"\n<{_mrkdwn(lead.url).replace('|', '%7C')}|open in {lead.source}>"
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(title, 150)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": body}},
    ]
    return _mrkdwn(title), blocks


def firing(alerts: Sequence[Alert]) -> list[Alert]:
    """The alerts a workflow is for: the firing ones, heartbeats left out; the first leads the question."""
    return [a for a in alerts if a.status == "firing" and not is_heartbeat(a)]


def question(alerts: Sequence[Alert]) -> str | None:
    """What the knowledge base is asked about a group's firing alerts (heartbeats left out), or None
    when nothing is firing that needs a workflow. At most ``MAX_QUESTION`` characters."""
    asked = firing(alerts)
    if not asked:
        return None
    names = list(dict.fromkeys(a.name for a in asked))
    lead = asked[0]
    labels = ", ".join(f"{k}={v}" for k, v in lead.labels.items() if k != "alertname")
    head = " and ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    text = f"{head} firing ({_cut(labels, 200)})" if labels else f"{head} firing"
    if lead.summary:
        text += f": {lead.summary}"
    return _cut(" ".join(text.split()), MAX_QUESTION)


def _pair(name: str, value: str) -> str:
    return f"`{_mrkdwn(name)}={_mrkdwn(value)}`"


def _mrkdwn(text: str) -> str:
    """Outside text as Slack shows it literally: its three control characters escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
