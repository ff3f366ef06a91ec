"""Alert sources: webhook payloads → ``Alert``s, webhook authentication, and routing to a channel.

Pure functions, no I/O: the HTTP server decodes the body, checks it with ``verify_bearer`` or
``verify_pagerduty``, parses it with ``PARSERS[source]`` and routes each alert with ``route``.

Every parser takes the decoded JSON and returns a list of alerts, or raises ``AlertError`` naming
the field that is wrong (``alerts[2].labels: expected an object``); no other exception escapes.
Unknown fields are ignored, so a payload from a newer sender still parses; so are links and
PagerDuty references of an unexpected type, since refusing the payload would lose the alert over a
detail. Label and annotation values are coerced to text (numbers and booleans as JSON, objects as
compact JSON). Texts are cut at ``MAX_TEXT`` characters, and a payload with more than ``MAX_ALERTS``
alerts or an alert with more than ``MAX_PAIRS`` labels is refused, so a hostile payload cannot make
the parse grow memory.
Alertmanager's zero time ``0001-01-01T00:00:00Z`` means unset; ``ends_at`` is kept only on resolved
alerts (on a firing one it is a lease, not an end).

A parser returns an ``AlertBatch``: the alerts, and how many more the sender left out.
A group key names the group *at its sender*: two Alertmanagers with the same route config send the
same ``groupKey`` for different alerts, so the key is scoped by the sender (``externalURL``, and
Grafana's ``orgId``). The bot scopes it further by the channel each alert is routed to.

Meta-alerts: Grafana's ``DatasourceNoData`` and ``DatasourceError`` are named after the rule they
stand for (its ``rulename`` label) and say what happened to its query; heartbeats (``HEARTBEATS``:
alerts that fire all the time to prove the pipeline works) are marked by ``is_heartbeat``.

Sources:

- ``alertmanager``: the webhook of Prometheus Alertmanager (version 4). One alert per entry of
  ``alerts``; ``group_key`` is ``<externalURL> <groupKey>``, ``fingerprint`` Alertmanager's.
  Too many alerts? Set ``max_alerts`` in the webhook config: Alertmanager then truncates, and
  ``truncatedAlerts`` says by how many.
- ``grafana``: Grafana unified alerting's webhook contact point (Alertmanager's shape plus
  ``orgId``, ``title``, ``message``, per-alert ``values``, ``dashboardURL``, ``panelURL``…);
  ``group_key`` is ``<externalURL> org=<orgId> <groupKey>``.
- ``pagerduty``: a PagerDuty v3 webhook event. ``incident.*`` events about an incident give one
  alert whose fingerprint and group key are the incident id (resolved when the incident is);
  other events (``pagey.ping``, notes, services) give none.
- ``generic``: this shape, for anything else that can POST JSON::

      {"name": "DiskFull",                 # required
       "status": "firing",                 # "firing" (default) or "resolved"
       "severity": "critical",             # optional strings from here on
       "summary": "/var is 97% full",
       "labels": {"host": "db1", "team": "db"},       # values: strings, numbers, booleans
       "annotations": {"runbook": "https://…"},
       "fingerprint": "db1-var",           # default: a hash of name and labels
       "group": "DiskFull",                # alerts with the same group share a thread; default: name
       "starts_at": "2024-05-01T12:00:00Z",   # RFC 3339
       "ends_at": "2024-05-01T12:30:00Z",
       "url": "https://monitoring/…"}

  The body is one such object, a list of them, or ``{"alerts": [...]}``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from pydantic import SecretStr, ValidationError

from core.errors import AlertError
from core.settings import AlertRoute
from core.types import Alert, AlertSource

MAX_ALERTS = 1000
MAX_PAIRS = 256
MAX_TEXT = 4096
_MAX_KEY = 512  # longer fingerprints and group keys are replaced by their hash, keeping them distinct
_NAMELESS = "unnamed alert"
_SUMMARY_KEYS = ("summary", "description", "message")
HEARTBEATS = frozenset({"Watchdog", "DeadMansSwitch", "InfoInhibitor"})
_NO_DATA = {"DatasourceNoData": "returned no data", "DatasourceError": "failed to query its data source"}


class AlertBatch(list[Alert]):
    """The alerts of one notification, in its order, and ``truncated``: how many more alerts of the
    group its sender left out (Alertmanager's ``truncatedAlerts``; 0 when it sent them all)."""

    def __init__(self, alerts: Sequence[Alert] = (), truncated: int = 0) -> None:
        super().__init__(alerts)
        self.truncated = truncated


def is_heartbeat(alert: Alert) -> bool:
    """Whether the alert is meant to fire all the time (Watchdog, DeadMansSwitch, InfoInhibitor):
    firing means the alerting pipeline works, so there is nothing to do about it."""
    return alert.name in HEARTBEATS or alert.labels.get("alertname") in HEARTBEATS


def parse_alertmanager(payload: Any) -> AlertBatch:
    """Alerts of an Alertmanager webhook notification (version 4)."""
    return _parse_grouped(payload, "alertmanager", url_keys=("generatorURL",))


def parse_grafana(payload: Any) -> AlertBatch:
    """Alerts of a Grafana unified-alerting webhook; the link is the rule's, else the panel's or dashboard's."""
    return _parse_grouped(payload, "grafana", url_keys=("generatorURL", "panelURL", "dashboardURL"))


def parse_pagerduty(payload: Any) -> AlertBatch:
    """The incident a PagerDuty v3 webhook event is about, or nothing for other events."""
    event = _object(_object(payload, "").get("event"), "event")
    event_type = _required_text(event.get("event_type"), "event.event_type")
    data = event.get("data")
    if not event_type.startswith("incident.") or not isinstance(data, dict) or data.get("type") != "incident":
        return AlertBatch()
    incident_id = _key(_required_text(data.get("id"), "event.data.id", limit=None))
    resolved = event_type == "incident.resolved" or data.get("status") == "resolved"
    labels = {
        "service": _reference(data.get("service")),
        "urgency": _text(data.get("urgency"), "event.data.urgency"),
        "priority": _reference(data.get("priority")),
        "team": _reference(data.get("teams")),
        "escalation_policy": _reference(data.get("escalation_policy")),
    }
    annotations = {
        "event_type": event_type,
        "status": _text(data.get("status"), "event.data.status"),
        "agent": _reference(event.get("agent")),
    }
    return AlertBatch(
        [
            _alert(
                "pagerduty",
                path="event.data",
                fingerprint=incident_id,
                group_key=incident_id,
                status="resolved" if resolved else "firing",
                name=_text(data.get("title"), "event.data.title") or _cut(incident_id),
                severity=labels["priority"] or labels["urgency"],
                labels={k: v for k, v in labels.items() if v},
                annotations={k: v for k, v in annotations.items() if v},
                starts_at=_time(data.get("created_at"), "event.data.created_at"),
                ends_at=_time(event.get("occurred_at"), "event.occurred_at") if resolved else None,
                url=_link(data.get("html_url")),
            )
        ]
    )


def parse_generic(payload: Any) -> AlertBatch:
    """Alerts in opsflow's own shape (see the module docstring)."""
    if isinstance(payload, dict) and "alerts" in payload:
        return AlertBatch([_generic(item, path) for item, path in _items(payload["alerts"], "alerts")])
    if isinstance(payload, list):
        return AlertBatch([_generic(item, path) for item, path in _items(payload, "")])
    return AlertBatch([_generic(payload, "")])


PARSERS: dict[AlertSource, Callable[[Any], AlertBatch]] = {
    "alertmanager": parse_alertmanager,
    "grafana": parse_grafana,
    "pagerduty": parse_pagerduty,
    "generic": parse_generic,
}


def verify_bearer(authorization_header: str | None, token: SecretStr | None) -> bool:
    """Whether ``Authorization: Bearer <token>`` carries the configured token (compared in constant time).

    With no token configured nothing is accepted: an alert endpoint is closed until a token is set.
    """
    if token is None or not token.get_secret_value() or not authorization_header:
        return False
    scheme, _, credentials = authorization_header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    expected = token.get_secret_value().encode(errors="surrogatepass")
    return hmac.compare_digest(credentials.strip().encode(errors="surrogatepass"), expected)


def verify_pagerduty(body: bytes, signature_header: str | None, secret: SecretStr | None) -> bool:
    """Whether ``X-PagerDuty-Signature`` holds a ``v1=<hex HMAC-SHA256 of the body>`` made with ``secret``.

    The header may list several comma-separated signatures (PagerDuty sends one per active secret
    while a secret is rotated); any match accepts. With no secret configured nothing is accepted.
    """
    if secret is None or not secret.get_secret_value() or not signature_header:
        return False
    key = secret.get_secret_value().encode(errors="surrogatepass")
    expected = hmac.new(key, body, hashlib.sha256).hexdigest().encode()
    for signature in signature_header.split(","):
        version, _, digest = signature.strip().partition("=")
        if version == "v1" and hmac.compare_digest(digest.strip().lower().encode(errors="surrogatepass"), expected):
            return True
    return False


def route(alert: Alert, routes: Sequence[AlertRoute], default: str | None) -> str | None:
    """The channel of the first route whose ``match`` pairs are all among the alert's labels, else ``default``.

    A route with an empty ``match`` matches every alert.
    """
    for candidate in routes:
        if all(alert.labels.get(name) == value for name, value in candidate.match.items()):
            return candidate.channel
    return default


def _parse_grouped(payload: Any, source: AlertSource, *, url_keys: tuple[str, ...]) -> AlertBatch:
    """Alertmanager's shape, which Grafana shares; an alert without a link of its own gets the sender's."""
    body = _object(payload, "")
    fallback_url = _link(body.get("externalURL"))
    org = _scalar(body.get("orgId")) if source == "grafana" else ""
    sender = " ".join(part for part in (fallback_url, f"org={org}" if org else "") if part)
    group_key = _key(
        " ".join(part for part in (sender, _required_text(body.get("groupKey"), "groupKey", limit=None)) if part)
    )
    alerts = []
    for item, path in _items(body.get("alerts"), "alerts"):
        entry = _object(item, path)
        labels = _pairs(entry.get("labels"), f"{path}.labels")
        annotations = _pairs(entry.get("annotations"), f"{path}.annotations")
        status = _status(entry.get("status"), f"{path}.status", required=True)
        urls = (_link(entry.get(key)) for key in url_keys)
        name = labels.get("alertname") or _NAMELESS
        summary = next((annotations[key] for key in _SUMMARY_KEYS if annotations.get(key)), "")
        if name in _NO_DATA and labels.get("rulename"):  # Grafana's stand-in for a rule it could not evaluate
            rule, failure = labels["rulename"], annotations.get("Error", "")
            name, summary = rule, f"{rule} {_NO_DATA[name]} ({name})" + (f": {failure}" if failure else "")
        alerts.append(
            _alert(
                source,
                path=path,
                fingerprint=_key(_text(entry.get("fingerprint"), f"{path}.fingerprint", limit=None))
                or _digest(name, labels),
                group_key=group_key,
                status=status,
                name=name,
                severity=labels.get("severity", ""),
                summary=_cut(summary),
                labels=labels,
                annotations=annotations,
                starts_at=_time(entry.get("startsAt"), f"{path}.startsAt"),
                ends_at=_time(entry.get("endsAt"), f"{path}.endsAt") if status == "resolved" else None,
                url=next((url for url in urls if url), fallback_url),
            )
        )
    return AlertBatch(alerts, truncated=_count(body.get("truncatedAlerts")))


def _generic(item: Any, path: str) -> Alert:
    entry = _object(item, path)
    at = f"{path}." if path else ""
    name = _required_text(entry.get("name"), f"{at}name")
    labels = _pairs(entry.get("labels"), f"{at}labels")
    status = _status(entry.get("status"), f"{at}status", required=False)
    return _alert(
        "generic",
        path=path,
        fingerprint=_key(_text(entry.get("fingerprint"), f"{at}fingerprint", limit=None)) or _digest(name, labels),
        group_key=_key(_text(entry.get("group"), f"{at}group", limit=None)) or name,
        status=status,
        name=name,
        severity=_text(entry.get("severity"), f"{at}severity"),
        summary=_text(entry.get("summary"), f"{at}summary"),
        labels=labels,
        annotations=_pairs(entry.get("annotations"), f"{at}annotations"),
        starts_at=_time(entry.get("starts_at"), f"{at}starts_at"),
        ends_at=_time(entry.get("ends_at"), f"{at}ends_at") if status == "resolved" else None,
        url=_link(entry.get("url")),
    )


def _alert(source: AlertSource, *, path: str, **fields: Any) -> Alert:
    try:
        return Alert(source=source, **fields)
    except ValidationError as exc:  # the helpers above validate every field; this is the last guard
        raise AlertError(f"{path or 'payload'}: {exc.errors()[0]['msg']}") from exc


def _items(value: Any, path: str) -> list[tuple[Any, str]]:
    if not isinstance(value, list):
        raise AlertError(f"{path or 'payload'}: expected a list, got {_kind(value)}")
    if len(value) > MAX_ALERTS:
        raise AlertError(f"{path or 'payload'}: {len(value)} alerts, more than the {MAX_ALERTS} accepted at once")
    return [(item, f"{path}[{index}]") for index, item in enumerate(value)]


def _object(value: Any, path: str) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise AlertError(f"{path or 'payload'}: expected an object, got {_kind(value)}")
    return value


def _pairs(value: Any, path: str) -> dict[str, str]:
    """A label or annotation map with text values; missing or null is empty."""
    if value is None:
        return {}
    mapping = _object(value, path)
    if len(mapping) > MAX_PAIRS:
        raise AlertError(f"{path}: {len(mapping)} entries, more than the {MAX_PAIRS} accepted")
    return {_cut(str(key)): _cut(_as_text(item, f"{path}.{_cut(str(key), 40)}")) for key, item in mapping.items()}


def _text(value: Any, path: str, *, limit: int | None = MAX_TEXT) -> str:
    """An optional text field: a string or a number; missing or null is empty."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        raise AlertError(f"{path}: expected a string, got {_kind(value)}")
    return _cut(_as_text(value, path), limit)


def _required_text(value: Any, path: str, *, limit: int | None = MAX_TEXT) -> str:
    text = _text(value, path, limit=limit).strip()
    if not text:
        raise AlertError(f"{path}: missing or empty")
    return text


def _status(value: Any, path: str, *, required: bool) -> Literal["firing", "resolved"]:
    text = _text(value, path).strip().lower()
    if text == "firing" or (not text and not required):
        return "firing"
    if text == "resolved":
        return "resolved"
    raise AlertError(f"{path}: expected 'firing' or 'resolved', got {_kind(value)} {_cut(str(value), 40)!r}")


def _time(value: Any, path: str) -> dt.datetime | None:
    """An RFC 3339 time; missing, empty or the zero time is None; a time without zone is UTC."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise AlertError(f"{path}: expected an RFC 3339 time, got {_kind(value)}")
    try:
        if len(value) > 64:
            raise ValueError("too long")
        parsed = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise AlertError(f"{path}: not an RFC 3339 time: {_cut(value, 40)!r}") from exc
    if parsed.year <= 1:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _link(value: Any) -> str:
    """A URL, or nothing when it is not a string: a bad link is not worth refusing an alert for."""
    return _cut(value) if isinstance(value, str) else ""


def _scalar(value: Any) -> str:
    """A string or number as text; anything else is left out (it only scopes a key)."""
    return _cut(str(value), 40) if isinstance(value, str | int) and not isinstance(value, bool) else ""


def _count(value: Any) -> int:
    """A count the sender reports (``truncatedAlerts``); one that is not a whole number ≥ 0 reads as 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _reference(value: Any) -> str:
    """The ``summary`` of a PagerDuty reference (service, priority, agent…) or of the first in a list.

    Like links, these only decorate the alert: one of another shape is left out, not refused.
    """
    if isinstance(value, list) and value:
        value = value[0]
    summary = value.get("summary") if isinstance(value, dict) else None
    return _cut(summary) if isinstance(summary, str) else ""


def _as_text(value: Any, path: str) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    except (RecursionError, TypeError, ValueError) as exc:
        raise AlertError(f"{path}: cannot be read as text ({type(exc).__name__})") from exc


def _cut(text: str, limit: int | None = MAX_TEXT) -> str:
    """At most ``limit`` characters, with lone surrogates (valid in JSON, not in UTF-8) replaced."""
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    if text.isascii():
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _key(text: str) -> str:
    """A fingerprint or group key, hashed when long so that distinct keys stay distinct."""
    return text if len(text) <= _MAX_KEY else "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _digest(name: str, labels: Mapping[str, str]) -> str:
    """A stable fingerprint for alerts that come without one: same name and labels, same alert."""
    canonical = json.dumps([name, sorted(labels.items())], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )
