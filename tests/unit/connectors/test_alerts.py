from __future__ import annotations

import copy
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from connectors.alerts import (
    HEARTBEATS,
    MAX_ALERTS,
    MAX_PAIRS,
    MAX_TEXT,
    PARSERS,
    is_heartbeat,
    parse_alertmanager,
    parse_generic,
    parse_grafana,
    parse_pagerduty,
    route,
    verify_bearer,
    verify_pagerduty,
)
from core.errors import AlertError
from core.settings import AlertRoute, AlertSettings
from core.types import Alert

DATA = Path(__file__).resolve().parents[2] / "data" / "alerts"
UTC = dt.UTC


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def pagerduty(event_type: str, **data: Any) -> dict[str, Any]:
    payload = load("pagerduty_triggered.json")
    payload["event"]["event_type"] = event_type
    payload["event"]["data"].update(data)
    return payload


# --- Alertmanager and Grafana ---------------------------------------------------------------


def test_alertmanager_payload_gives_one_alert_per_entry_under_the_payloads_group_key() -> None:
    firing, resolved = parse_alertmanager(load("alertmanager.json"))
    assert firing == Alert(
        source="alertmanager",
        fingerprint="5f1d2c3b4a596877",
        group_key='http://alertmanager:9093 {}:{alertname="KubeAPIDown"}',
        status="firing",
        name="KubeAPIDown",
        severity="critical",
        summary="Target disappeared from Prometheus target discovery.",
        labels={"alertname": "KubeAPIDown", "job": "apiserver", "severity": "critical", "team": "platform"},
        annotations=firing.annotations,
        starts_at=dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC),
        ends_at=None,
        url="http://prometheus:9090/graph?g0.expr=absent%28up%7Bjob%3D%22apiserver%22%7D+%3D%3D+1%29&g0.tab=1",
    )
    assert firing.annotations["runbook_url"].endswith("/kubeapidown")
    assert resolved.status == "resolved"
    assert resolved.group_key == firing.group_key
    assert resolved.ends_at == dt.datetime(2024, 5, 1, 11, 58, 30, tzinfo=UTC)
    assert resolved.summary == "KubeAPI has disappeared from Prometheus target discovery."  # description
    assert resolved.url == "http://alertmanager:9093"  # no generator URL: the Alertmanager's


def test_grafana_payload_links_the_rule_and_ignores_grafanas_extra_fields() -> None:
    (alert,) = parse_grafana(load("grafana.json"))
    assert alert.source == "grafana"
    assert (alert.name, alert.severity, alert.status) == ("High replication lag", "warning", "firing")
    assert alert.summary == "Replica db-replica-1 is 312 s behind the primary"
    assert alert.fingerprint == "a3f4c2e0b9d81e27"
    assert alert.group_key.startswith("https://grafana.example.com/ org=1 {}/")
    assert alert.group_key.endswith('{alertname="High replication lag", grafana_folder="Databases"}')
    assert alert.url == "https://grafana.example.com/alerting/grafana/bdk0b1p8/view?orgId=1"
    assert alert.labels["team"] == "db"
    assert alert.ends_at is None


@pytest.mark.parametrize(
    ("drop", "url"),
    [
        (("generatorURL",), "https://grafana.example.com/d/pg-replication?orgId=1&viewPanel=4"),
        (("generatorURL", "panelURL"), "https://grafana.example.com/d/pg-replication?orgId=1"),
        (("generatorURL", "panelURL", "dashboardURL"), "https://grafana.example.com/"),
    ],
)
def test_grafana_link_falls_back_to_panel_dashboard_then_grafana(drop: tuple[str, ...], url: str) -> None:
    payload = load("grafana.json")
    for key in drop:
        del payload["alerts"][0][key]
    assert parse_grafana(payload)[0].url == url


def test_an_alert_without_fingerprint_or_alertname_gets_a_stable_one_and_a_placeholder_name() -> None:
    payload = {"groupKey": "g", "alerts": [{"status": "firing", "labels": {"job": "x"}}]}
    first, second = parse_alertmanager(payload)[0], parse_alertmanager(copy.deepcopy(payload))[0]
    assert first.fingerprint == second.fingerprint and len(first.fingerprint) == 16
    assert first.name == "unnamed alert"
    payload["alerts"][0]["labels"]["job"] = "y"
    assert parse_alertmanager(payload)[0].fingerprint != first.fingerprint


@pytest.mark.parametrize(
    ("starts_at", "expected"),
    [
        ("0001-01-01T00:00:00Z", None),
        ("", None),
        (None, None),
        ("2024-05-01T14:00:00+02:00", dt.datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T12:00:00", dt.datetime(2024, 5, 1, 12, tzinfo=UTC)),  # no zone: UTC
    ],
)
def test_times_are_aware_and_the_zero_time_is_unset(starts_at: str | None, expected: dt.datetime | None) -> None:
    payload = {"groupKey": "g", "alerts": [{"status": "firing", "labels": {}, "startsAt": starts_at}]}
    assert parse_alertmanager(payload)[0].starts_at == expected


def test_label_and_annotation_values_become_text() -> None:
    payload = {
        "groupKey": "g",
        "alerts": [
            {
                "status": "firing",
                "labels": {"port": 5432, "ratio": 0.5, "primary": True, "none": None},
                "annotations": {"detail": {"b": [1, 2], "a": "x"}},
            }
        ],
    }
    (alert,) = parse_alertmanager(payload)
    assert alert.labels == {"port": "5432", "ratio": "0.5", "primary": "true", "none": "null"}
    assert alert.annotations == {"detail": '{"a":"x","b":[1,2]}'}


def test_the_same_group_key_from_two_senders_is_two_groups() -> None:
    staging, prod, org2 = load("alertmanager.json"), load("alertmanager.json"), load("grafana.json")
    staging["externalURL"], prod["externalURL"] = "http://am.staging:9093", "http://am.prod:9093"
    assert staging["groupKey"] == prod["groupKey"]
    assert parse_alertmanager(staging)[0].group_key != parse_alertmanager(prod)[0].group_key
    org2["orgId"] = 2
    assert parse_grafana(org2)[0].group_key != parse_grafana(load("grafana.json"))[0].group_key
    assert parse_grafana(org2)[0].group_key.startswith("https://grafana.example.com/ org=2 ")
    del staging["externalURL"]
    assert parse_alertmanager(staging)[0].group_key == '{}:{alertname="KubeAPIDown"}'  # no sender to scope by


@pytest.mark.parametrize(("value", "truncated"), [(3, 3), (0, 0), (None, 0), (-2, 0), ("7", 0), (True, 0), (1.5, 0)])
def test_truncated_alerts_are_counted_and_odd_counts_read_as_none(value: Any, truncated: int) -> None:
    payload = load("alertmanager.json")
    payload["truncatedAlerts"] = value
    batch = parse_alertmanager(payload)
    assert batch.truncated == truncated and len(batch) == 2


def grafana_meta(alertname: str, **annotations: str) -> dict[str, Any]:
    payload = load("grafana.json")
    labels = {"alertname": alertname, "rulename": "High replication lag", "datasource_uid": "prom-1", "ref_id": "A"}
    payload["alerts"][0].update(labels=labels, annotations=annotations)
    return payload


@pytest.mark.parametrize(
    ("payload", "summary"),
    [
        (grafana_meta("DatasourceNoData"), "High replication lag returned no data (DatasourceNoData)"),
        (
            grafana_meta("DatasourceError", Error="dial tcp 10.0.0.9:9090: connect: connection refused"),
            "High replication lag failed to query its data source (DatasourceError): dial tcp 10.0.0.9:9090: "
            "connect: connection refused",
        ),
    ],
)
def test_grafana_datasource_meta_alerts_name_the_real_rule(payload: dict[str, Any], summary: str) -> None:
    (alert,) = parse_grafana(payload)
    assert (alert.name, alert.summary) == ("High replication lag", summary)
    assert alert.labels["alertname"] == payload["alerts"][0]["labels"]["alertname"]  # still visible as a label
    del payload["alerts"][0]["labels"]["rulename"]
    assert parse_grafana(payload)[0].name == payload["alerts"][0]["labels"]["alertname"]  # nothing better to say


@pytest.mark.parametrize("name", sorted(HEARTBEATS))
def test_heartbeats_are_recognised_from_every_source(name: str) -> None:
    payload = load("alertmanager.json")
    payload["alerts"][0]["labels"]["alertname"] = name
    assert is_heartbeat(parse_alertmanager(payload)[0])
    assert not is_heartbeat(parse_alertmanager(payload)[1])
    assert is_heartbeat(parse_generic({"name": name})[0])
    assert is_heartbeat(parse_pagerduty(pagerduty("incident.triggered", title=name))[0])
    assert not is_heartbeat(parse_generic({"name": f"{name}Missing"})[0])


# --- PagerDuty ------------------------------------------------------------------------------


def test_pagerduty_incident_becomes_an_alert_keyed_by_the_incident() -> None:
    (alert,) = parse_pagerduty(load("pagerduty_triggered.json"))
    assert alert == Alert(
        source="pagerduty",
        fingerprint="Q0RIJJZL24RC6W",
        group_key="Q0RIJJZL24RC6W",
        status="firing",
        name="Checkout error rate above 5%",
        severity="P1",
        labels={
            "service": "Payments API",
            "urgency": "high",
            "priority": "P1",
            "team": "payments",
            "escalation_policy": "Payments on-call",
        },
        annotations={"event_type": "incident.triggered", "status": "triggered", "agent": "Payments API"},
        starts_at=dt.datetime(2024, 5, 1, 12, 0, 4, tzinfo=UTC),
        url="https://acme.pagerduty.com/incidents/Q0RIJJZL24RC6W",
    )


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        (pagerduty("incident.triggered"), "firing"),
        (pagerduty("incident.acknowledged", status="acknowledged"), "firing"),
        (pagerduty("incident.reopened"), "firing"),
        (pagerduty("incident.resolved", status="resolved"), "resolved"),
        (pagerduty("incident.resolved"), "resolved"),
        # An update after the incident resolved must not reopen its thread.
        (pagerduty("incident.priority_updated", status="resolved"), "resolved"),
    ],
)
def test_pagerduty_status_follows_the_incident(payload: dict[str, Any], status: str) -> None:
    (alert,) = parse_pagerduty(payload)
    assert alert.status == status
    assert (alert.ends_at is not None) == (status == "resolved")


def test_pagerduty_resolution_ends_when_the_event_occurred() -> None:
    (alert,) = parse_pagerduty(pagerduty("incident.resolved", status="resolved"))
    assert alert.ends_at == dt.datetime(2024, 5, 1, 12, 0, 5, 412000, tzinfo=UTC)
    assert alert.annotations["event_type"] == "incident.resolved"


@pytest.mark.parametrize(
    "payload",
    [
        {"event": {"id": "1", "event_type": "pagey.ping", "data": {"message": "Hello", "type": "ping"}}},
        {"event": {"id": "2", "event_type": "service.updated", "data": {"id": "PF9KMXH", "type": "service"}}},
        pagerduty("incident.annotated", type="incident_note"),
        {"event": {"event_type": "incident.triggered", "data": None}},
    ],
)
def test_pagerduty_events_about_no_incident_give_no_alert(payload: dict[str, Any]) -> None:
    assert parse_pagerduty(payload) == []


def test_pagerduty_incident_with_nulls_keeps_what_it_has() -> None:
    payload = pagerduty("incident.triggered", service=None, priority=None, teams=[], escalation_policy=None)
    del payload["event"]["agent"]
    (alert,) = parse_pagerduty(payload)
    assert alert.labels == {"urgency": "high"}
    assert alert.severity == "high"


def test_links_and_references_of_another_shape_are_left_out_not_refused() -> None:
    payload = pagerduty("incident.triggered", service="svc", teams="payments", priority={"summary": 1})
    payload["event"]["data"]["html_url"] = {"href": "x"}
    (alert,) = parse_pagerduty(payload)
    assert alert.labels == {"urgency": "high", "escalation_policy": "Payments on-call"}
    assert alert.url == ""
    grafana = load("grafana.json")
    grafana["alerts"][0]["generatorURL"] = ["x"]
    assert parse_grafana(grafana)[0].url == "https://grafana.example.com/d/pg-replication?orgId=1&viewPanel=4"


# --- generic --------------------------------------------------------------------------------


def test_generic_alert_takes_every_documented_field() -> None:
    (alert,) = parse_generic(
        {
            "name": "DiskFull",
            "status": "resolved",
            "severity": "critical",
            "summary": "/var is 97% full",
            "labels": {"host": "db1", "team": "db"},
            "annotations": {"runbook": "https://runbooks/disk"},
            "fingerprint": "db1-var",
            "group": "disks",
            "starts_at": "2024-05-01T12:00:00Z",
            "ends_at": "2024-05-01T12:30:00Z",
            "url": "https://monitoring/disk",
        }
    )
    assert alert == Alert(
        source="generic",
        fingerprint="db1-var",
        group_key="disks",
        status="resolved",
        name="DiskFull",
        severity="critical",
        summary="/var is 97% full",
        labels={"host": "db1", "team": "db"},
        annotations={"runbook": "https://runbooks/disk"},
        starts_at=dt.datetime(2024, 5, 1, 12, tzinfo=UTC),
        ends_at=dt.datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
        url="https://monitoring/disk",
    )


def test_generic_defaults_firing_grouped_by_name_with_a_label_hash_fingerprint() -> None:
    (a,) = parse_generic({"name": "DiskFull", "labels": {"host": "db1"}})
    (b,) = parse_generic({"name": "DiskFull", "labels": {"host": "db2"}})
    (a_again,) = parse_generic({"labels": {"host": "db1"}, "name": "DiskFull"})
    assert (a.status, a.group_key, b.group_key) == ("firing", "DiskFull", "DiskFull")
    assert a.fingerprint == a_again.fingerprint != b.fingerprint
    assert a.ends_at is None


@pytest.mark.parametrize(
    "payload",
    [
        [{"name": "A"}, {"name": "B", "status": "resolved"}],
        {"alerts": [{"name": "A"}, {"name": "B", "status": "resolved"}]},
    ],
)
def test_generic_accepts_a_list_or_an_alerts_envelope(payload: Any) -> None:
    assert [(a.name, a.status) for a in parse_generic(payload)] == [("A", "firing"), ("B", "resolved")]


# --- invalid payloads -----------------------------------------------------------------------

Parser = Callable[[Any], list[Alert]]
AM_ALERT = {"status": "firing", "labels": {"alertname": "X"}}


@pytest.mark.parametrize(
    ("parser", "payload", "message"),
    [
        (parse_alertmanager, [], "payload: expected an object, got a list"),
        (parse_alertmanager, {"alerts": [AM_ALERT]}, "groupKey: missing"),
        (parse_alertmanager, {"groupKey": "g"}, "alerts: expected a list, got null"),
        (parse_alertmanager, {"groupKey": "g", "alerts": {}}, "alerts: expected a list, got an object"),
        (parse_alertmanager, {"groupKey": "g", "alerts": [AM_ALERT, 3]}, "alerts[1]: expected an object"),
        (parse_alertmanager, {"groupKey": "g", "alerts": [{**AM_ALERT, "labels": []}]}, "alerts[0].labels:"),
        (parse_alertmanager, {"groupKey": "g", "alerts": [{**AM_ALERT, "status": "pending"}]}, "alerts[0].status"),
        (parse_alertmanager, {"groupKey": "g", "alerts": [{"labels": {}}]}, "alerts[0].status: expected"),
        (parse_alertmanager, {"groupKey": "g", "alerts": [{**AM_ALERT, "startsAt": "today"}]}, "startsAt: not"),
        (parse_alertmanager, {"groupKey": "g", "alerts": [{**AM_ALERT, "startsAt": 1714564800}]}, "startsAt"),
        (parse_grafana, {"groupKey": {"a": 1}, "alerts": []}, "groupKey: expected a string, got an object"),
        (parse_pagerduty, {}, "event: expected an object, got null"),
        (parse_pagerduty, {"event": {"data": {}}}, "event.event_type: missing"),
        (parse_pagerduty, {"event": {"event_type": "incident.triggered", "data": {"type": "incident"}}}, "data.id"),
        (parse_generic, {"status": "firing"}, "name: missing"),
        (parse_generic, "DiskFull", "payload: expected an object, got a string"),
        (parse_generic, [{"name": "A"}, {"name": {}}], "[1].name: expected a string, got an object"),
        (parse_generic, {"alerts": [{"name": "A", "labels": "x"}]}, "alerts[0].labels: expected an object"),
        (parse_generic, {"name": "A", "status": "ok"}, "status: expected 'firing' or 'resolved'"),
        (parse_generic, {"alerts": None}, "alerts: expected a list, got null"),
    ],
)
def test_invalid_payloads_raise_alert_error_naming_the_field(parser: Parser, payload: Any, message: str) -> None:
    with pytest.raises(AlertError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parser(payload)


def test_more_alerts_than_accepted_are_refused_with_a_hint() -> None:
    payload = {"groupKey": "g", "alerts": [AM_ALERT] * (MAX_ALERTS + 1)}
    with pytest.raises(AlertError, match=f"more than the {MAX_ALERTS}"):
        parse_alertmanager(payload)
    assert len(parse_alertmanager({"groupKey": "g", "alerts": [AM_ALERT] * MAX_ALERTS})) == MAX_ALERTS


def test_too_many_labels_are_refused_and_long_values_cut() -> None:
    many = {f"l{i}": "v" for i in range(MAX_PAIRS + 1)}
    with pytest.raises(AlertError, match=rf"alerts\[0\].labels: {MAX_PAIRS + 1} entries"):
        parse_alertmanager({"groupKey": "g", "alerts": [{**AM_ALERT, "labels": many}]})
    (alert,) = parse_generic({"name": "A", "labels": {"blob": "x" * 1_000_000}, "summary": "y" * 1_000_000})
    assert len(alert.labels["blob"]) == len(alert.summary) == MAX_TEXT


def test_long_group_keys_are_hashed_and_stay_distinct() -> None:
    (a,) = parse_generic({"name": "A", "group": "g" * 10_000 + "1"})
    (b,) = parse_generic({"name": "A", "group": "g" * 10_000 + "2"})
    assert a.group_key != b.group_key
    assert a.group_key.startswith("sha256:") and len(a.group_key) < 100


def test_lone_surrogates_are_replaced_so_the_text_encodes() -> None:
    (alert,) = parse_generic(json.loads(r'{"name": "A\ud800", "labels": {"k\udc80": "v\ud83d"}}'))
    assert alert.name == "A\ufffd"
    assert alert.labels == {"k\ufffd": "v\ufffd"}
    alert.model_dump_json().encode()


def test_deeply_nested_label_value_is_an_alert_error_not_a_recursion_error() -> None:
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(AlertError, match=r"labels\.deep: cannot be read as text"):
        parse_generic({"name": "A", "labels": {"deep": deep}})


# --- auth -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "token", "accepted"),
    [
        ("Bearer s3cret", "s3cret", True),
        ("bearer s3cret", "s3cret", True),
        ("  Bearer   s3cret  ", "s3cret", True),
        ("Bearer s3cret2", "s3cret", False),
        ("Bearer s3cre", "s3cret", False),
        ("Basic s3cret", "s3cret", False),
        ("s3cret", "s3cret", False),
        ("Bearer", "s3cret", False),
        ("", "s3cret", False),
        (None, "s3cret", False),
        ("Bearer \ud800é", "s3cret", False),
        # No token configured: the endpoint is closed, whatever is sent.
        ("Bearer ", None, False),
        ("Bearer s3cret", None, False),
        ("Bearer ", "", False),
    ],
)
def test_bearer_token_check(header: str | None, token: str | None, accepted: bool) -> None:
    assert verify_bearer(header, SecretStr(token) if token is not None else None) is accepted


BODY = json.dumps(load("pagerduty_triggered.json")).encode()


def signature(body: bytes = BODY, secret: str = "pd-secret") -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    ("header", "secret", "accepted"),
    [
        (f"v1={signature()}", "pd-secret", True),
        (f"v1={signature().upper()}", "pd-secret", True),
        (f"v1={signature(secret='old')}, v1={signature()}", "pd-secret", True),  # during a secret rotation
        (f"v1={signature(secret='old')}", "pd-secret", False),
        (f"v1={signature(BODY + b' ')}", "pd-secret", False),
        (f"v0={signature()}", "pd-secret", False),
        (signature(), "pd-secret", False),
        ("v1=", "pd-secret", False),
        ("", "pd-secret", False),
        (None, "pd-secret", False),
        (f"v1={signature(secret='')}", None, False),
        (f"v1={signature(secret='')}", "", False),
    ],
)
def test_pagerduty_signature_check(header: str | None, secret: str | None, accepted: bool) -> None:
    assert verify_pagerduty(BODY, header, SecretStr(secret) if secret is not None else None) is accepted


# --- routing --------------------------------------------------------------------------------

ROUTES = AlertSettings(
    routes=[
        {"match": {"team": "db", "severity": "critical"}, "channel": "C-DB-PAGE"},
        {"match": {"team": "db"}, "channel": "C-DB"},
        {"match": {"service": "Payments API"}, "channel": "C-PAY"},
    ]
).routes


@pytest.mark.parametrize(
    ("labels", "default", "channel"),
    [
        ({"team": "db", "severity": "critical", "host": "db1"}, "C-ALL", "C-DB-PAGE"),
        ({"team": "db", "severity": "warning"}, "C-ALL", "C-DB"),  # first full match wins
        ({"team": "db"}, None, "C-DB"),
        ({"service": "Payments API"}, None, "C-PAY"),
        ({"team": "DB"}, "C-ALL", "C-ALL"),  # values match exactly
        ({"severity": "critical"}, "C-ALL", "C-ALL"),  # a partial match is no match
        ({}, "C-ALL", "C-ALL"),
        ({}, None, None),
    ],
)
def test_route_takes_the_first_route_whose_pairs_all_match(
    labels: dict[str, str], default: str | None, channel: str | None
) -> None:
    alert = parse_generic({"name": "A", "labels": labels})[0]
    assert route(alert, ROUTES, default) == channel


def test_a_route_without_pairs_matches_everything() -> None:
    alert = parse_generic({"name": "A"})[0]
    catch_all = [AlertRoute(match={"team": "x"}, channel="C1"), AlertRoute(match={}, channel="C2")]
    assert route(alert, catch_all, "C-ALL") == "C2"


def test_pagerduty_labels_route_like_any_other() -> None:
    (alert,) = parse_pagerduty(load("pagerduty_triggered.json"))
    assert route(alert, ROUTES, None) == "C-PAY"


# --- fuzzing --------------------------------------------------------------------------------

SAMPLES = {
    "alertmanager": load("alertmanager.json"),
    "grafana": load("grafana.json"),
    "pagerduty": load("pagerduty_triggered.json"),
    "generic": {
        "alerts": [
            {"name": "DiskFull", "labels": {"host": "db1"}, "starts_at": "2024-05-01T12:00:00Z", "severity": "major"},
            {
                "name": "DiskFull",
                "status": "resolved",
                "summary": "/var is 97% full",
                "labels": {"host": "db2", "size": 100},
                "annotations": {"runbook": "https://runbooks/disk"},
                "fingerprint": "db2-var",
                "group": "disks",
                "ends_at": "2024-05-01T12:30:00Z",
                "url": "https://monitoring/disk",
            },
        ]
    },
}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
KNOWN_KEYS = sorted(
    {"status", "labels", "annotations", "startsAt", "endsAt", "fingerprint", "event", "data", "type", "id"}
    | {"event_type", "alerts", "groupKey", "name", "starts_at", "ends_at", "summary", "teams", "service"}
)
# Random JSON, often in the rough shape of a payload so that the parsers get past the first check.
shaped_values = st.recursive(
    json_values,
    lambda children: (
        st.dictionaries(st.sampled_from(KNOWN_KEYS), children, max_size=6) | st.lists(children, max_size=3)
    ),
    max_leaves=30,
)


def must_parse_or_refuse(parser: Parser, payload: Any) -> list[Alert]:
    try:
        alerts = parser(payload)
    except AlertError as exc:
        assert str(exc)
        return []
    assert all(isinstance(alert, Alert) for alert in alerts)
    return alerts


@settings(max_examples=200, deadline=None, database=None)
@given(parser=st.sampled_from(list(PARSERS.values())), payload=shaped_values)
def test_any_json_either_parses_or_raises_alert_error(parser: Parser, payload: Any) -> None:
    must_parse_or_refuse(parser, payload)


def containers(value: Any) -> list[Any]:
    """Every object and list inside ``value``, itself included."""
    found, stack = [], [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict | list):
            found.append(item)
            stack.extend(item.values() if isinstance(item, dict) else item)
    return found


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=st.sampled_from(sorted(SAMPLES)), data=st.data())
def test_mutated_valid_payloads_either_parse_or_raise_alert_error(source: str, data: st.DataObject) -> None:
    payload = copy.deepcopy(SAMPLES[source])
    for _ in range(data.draw(st.integers(1, 4))):
        target = data.draw(st.sampled_from(containers(payload)))
        if isinstance(target, dict) and target:
            key = data.draw(st.sampled_from(sorted(target)))
            if data.draw(st.booleans()):
                del target[key]
            else:
                target[key] = data.draw(json_values)
        elif isinstance(target, list) and target:
            target[data.draw(st.integers(0, len(target) - 1))] = data.draw(json_values)
    must_parse_or_refuse(PARSERS[source], payload)


ODD_VALUES = [None, 0, -1.5, True, "", "x", "0001-01-01T00:00:00Z", [], [{}], {}, {"summary": []}]


def slots(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path of every value inside ``value``: object keys and list indices."""
    found = []
    if isinstance(value, dict | list):
        for key, child in value.items() if isinstance(value, dict) else enumerate(value):
            found.append((*prefix, key))
            found.extend(slots(child, (*prefix, key)))
    return found


@pytest.mark.parametrize("source", sorted(SAMPLES))
def test_every_field_deleted_or_replaced_by_an_odd_value_parses_or_raises_alert_error(source: str) -> None:
    for path in slots(SAMPLES[source]):
        for replacement in [KeyError, *ODD_VALUES]:  # KeyError stands for "delete it"
            payload = copy.deepcopy(SAMPLES[source])
            parent = payload
            for key in path[:-1]:
                parent = parent[key]
            if replacement is KeyError and isinstance(parent, dict):
                del parent[path[-1]]
            else:
                parent[path[-1]] = copy.deepcopy(replacement)
            must_parse_or_refuse(PARSERS[source], payload)


MAPS = {"labels", "annotations"}  # maps whose every entry the parsers keep


def add_junk(value: Any, junk: st.DataObject) -> None:
    """Add unknown fields to every object of a payload except the label and annotation maps."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(child for key, child in item.items() if key not in MAPS)
            for _ in range(junk.draw(st.integers(0, 3))):
                item["x-" + junk.draw(st.text(max_size=8))] = junk.draw(json_values)


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=st.sampled_from(sorted(SAMPLES)), data=st.data())
def test_unknown_fields_never_lose_a_valid_alert(source: str, data: st.DataObject) -> None:
    payload = copy.deepcopy(SAMPLES[source])
    expected = PARSERS[source](payload)
    add_junk(payload, data)
    assert PARSERS[source](payload) == expected
    assert expected
