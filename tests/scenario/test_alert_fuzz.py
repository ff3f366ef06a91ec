"""Fuzzing the running bot over real HTTP: never a 500, never a lost valid alert, and it keeps answering.

The bot (with the loopback fake Slack) runs for the whole module on its own event loop in a thread; the
tests send requests synchronously, one at a time, so every alert stored since the previous request is
this request's. For each 200 from an alert webhook the stored alerts must be exactly what
``PARSERS[source]`` makes of the same body; for anything else nothing may be stored. ``/slack/events``
gets unsigned, forged and signed-but-odd requests.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import gzip
import hashlib
import hmac
import http.client
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import select

from bot.alerting import stored_alert, thread_key
from bot.records import AlertRecord
from bot.server import MAX_BODY
from connectors.alerts import PARSERS
from core.settings import Settings
from generation.rendering import EDIT_WORKFLOW, ESCALATE, FEEDBACK_DOWN, FEEDBACK_UP, FLAG_STEP
from tests.botharness import ALERT_TOKEN, SECRET, RunningBot, running_bot
from tests.unit.connectors.test_alerts import SAMPLES, containers, json_values, shaped_values

T = TypeVar("T")
PD_SECRET = "pd-fuzz-secret"
SOURCES = sorted(PARSERS)
ACCEPTABLE = {200, 400, 401, 413, 503}  # 503: the queue is full; the sender retries
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass
class ServedBot:
    """The running bot, driven from the test thread."""

    running: RunningBot
    loop: asyncio.AbstractEventLoop
    port: int
    last_id: int = 0

    def call(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout=30)

    def post(
        self, path: str, body: bytes, headers: dict[str, str], *, split: bool = False, timeout: float = 30
    ) -> tuple[int, bytes]:
        """POST ``body``; ``split`` sends the headers first and the body a moment later, as a slow client does."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.putrequest("POST", path, skip_accept_encoding=True)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                connection.putheader(name, value)
            connection.endheaders(None if split else body)
            if split:
                time.sleep(0.1)
                connection.send(body)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def get(self, path: str) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    def new_rows(self) -> list[AlertRecord]:
        """Alerts stored since the last call, in the order they were stored."""
        last = self.last_id
        rows = self.call(
            self.running.bot.kb.records.transaction(
                lambda s: list(s.scalars(select(AlertRecord).where(AlertRecord.id > last).order_by(AlertRecord.id)))
            )
        )
        if rows:
            self.last_id = rows[-1].id
        return rows


@pytest.fixture(scope="module")
def served(sample_kb: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedBot]:
    loop = asyncio.new_event_loop()
    ready: concurrent.futures.Future[tuple[RunningBot, asyncio.Event]] = concurrent.futures.Future()
    records = tmp_path_factory.mktemp("fuzz") / "records.sqlite"

    async def serve() -> None:
        stop = asyncio.Event()
        alerts = {"answer": False, "pagerduty_secret": PD_SECRET}
        try:
            async with running_bot(sample_kb, records, alerts=alerts) as running:
                ready.set_result((running, stop))
                await stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), name="fuzzed-bot")
    # CPython 3.11's ast module checks its recursion depth in global state: the bot's thread formatting a
    # logged traceback while pytest formats a failure can crash pytest itself. Every response is asserted
    # here, so the bot's error logs are not needed.
    logging.disable(logging.ERROR)
    thread.start()
    try:
        running, stop = ready.result(timeout=120)
        try:
            yield ServedBot(running, loop, int(running.url.rsplit(":", 1)[1]))
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join(timeout=60)
            loop.close()
    finally:
        logging.disable(logging.NOTSET)


def headers_for(source: str, body: bytes, content_type: str = "application/json") -> dict[str, str]:
    """Valid credentials for ``source``: the bearer token, or PagerDuty's signature of the body."""
    headers = {"Content-Type": content_type} if content_type else {}
    if source == "pagerduty":
        digest = hmac.new(PD_SECRET.encode(), body, hashlib.sha256).hexdigest()
        return {**headers, "X-PagerDuty-Signature": f"v1={digest}"}
    return {**headers, "Authorization": f"Bearer {ALERT_TOKEN}"}


def check(served: ServedBot, source: str, body: bytes, headers: dict[str, str], **options: Any) -> int:
    """Send one webhook; assert no 500, and that what was stored is exactly the parse of the body."""
    status, reply = served.post(f"/alerts/{source}", body, headers, **options)
    assert status in ACCEPTABLE, (status, reply[:300])
    rows = served.new_rows()
    if status != 200:
        assert rows == [], f"HTTP {status} but {len(rows)} alerts stored"
        return status
    expected = PARSERS[source](json.loads(body))  # type: ignore[index]
    assert json.loads(reply) == {"stored": len(expected)}
    assert [stored_alert(r) for r in rows] == [(a, expected.truncated) for a in expected]
    assert [(r.source, r.group_key, r.fingerprint, r.status) for r in rows] == [
        (a.source, thread_key(a, "CALERTS"), a.fingerprint, a.status) for a in expected
    ]
    return status


def mutate(payload: Any, data: st.DataObject) -> Any:
    """Up to four random edits: a value replaced, a key deleted or added, a list item copied or dropped."""
    payload = copy.deepcopy(payload)
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        target = data.draw(st.sampled_from(containers(payload)))
        match data.draw(st.sampled_from(["replace", "delete", "add", "copy"])):
            case "replace" if target:
                key = data.draw(st.sampled_from(sorted(target) if isinstance(target, dict) else range(len(target))))
                target[key] = data.draw(shaped_values)
            case "delete" if target:
                key = data.draw(st.sampled_from(sorted(target) if isinstance(target, dict) else range(len(target))))
                del target[key]
            case "add" if isinstance(target, dict):
                target[data.draw(st.text(max_size=12))] = data.draw(json_values)
            case "copy" if isinstance(target, list) and target:
                target.append(copy.deepcopy(data.draw(st.sampled_from(target))))
    return payload


@FUZZ
@given(source=st.sampled_from(SOURCES), data=st.data())
def test_mutated_valid_payloads_are_stored_exactly_as_parsed_or_refused(
    served: ServedBot, source: str, data: st.DataObject
) -> None:
    body = json.dumps(mutate(SAMPLES[source], data)).encode()
    check(served, source, body, headers_for(source, body))


@FUZZ
@given(source=st.sampled_from(SOURCES), payload=shaped_values)
def test_any_json_value_is_stored_as_parsed_or_refused(served: ServedBot, source: str, payload: Any) -> None:
    body = json.dumps(payload).encode()
    check(served, source, body, headers_for(source, body))


@FUZZ
@given(
    source=st.sampled_from(SOURCES),
    body=st.binary(max_size=2000) | st.text(max_size=500).map(lambda t: t.encode("utf-8", "surrogatepass")),
    content_type=st.sampled_from(
        ["", "application/json", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
    ),
)
def test_random_bytes_are_refused_without_a_500(served: ServedBot, source: str, body: bytes, content_type: str) -> None:
    try:
        json.loads(body)
    except ValueError:
        assert check(served, source, body, headers_for(source, body, content_type)) == 400
    else:
        check(served, source, body, headers_for(source, body, content_type))


@FUZZ
@given(
    source=st.sampled_from(SOURCES),
    content_type=st.sampled_from(["", "text/plain", "application/xml", "application/json; charset=latin-1", "x/y"]),
    valid=st.booleans(),
)
def test_the_content_type_header_does_not_matter(
    served: ServedBot, source: str, content_type: str, valid: bool
) -> None:
    body = json.dumps(SAMPLES[source] if valid else {"groupKey": 1}).encode()
    assert check(served, source, body, headers_for(source, body, content_type)) in ((200, 503) if valid else (400,))


# aiohttp decoded these before the handler ran: 500s, and no answer at all when the body came after the headers.
# aiohttp used to decode these before the handler ran: 500s, and no answer at all when the body came late.
LYING_ENCODINGS = [
    pytest.param("gzip", b'{"name": "DiskFull"}', False, id="gzip"),
    pytest.param("deflate", b'{"name": "DiskFull"}', False, id="deflate"),
    pytest.param("deflate", b'{"groupKey": 1}', True, id="deflate-slow-client"),
]


@pytest.mark.parametrize("path", ["/alerts/generic", "/slack/events"])
@pytest.mark.parametrize(("encoding", "body", "split"), LYING_ENCODINGS)
def test_a_body_lying_about_its_content_encoding_is_answered_without_a_500(
    served: ServedBot, path: str, encoding: str, body: bytes, split: bool
) -> None:
    headers = {**headers_for("generic", body), "Content-Encoding": encoding}
    if path == "/alerts/generic":
        check(served, "generic", body, headers, split=split, timeout=5)
    else:
        assert served.post(path, body, headers, split=split, timeout=5)[0] == 401


@FUZZ
@given(
    source=st.sampled_from(SOURCES),
    payload=shaped_values,
    credentials=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(str.strip),
)
def test_wrong_credentials_store_nothing(served: ServedBot, source: str, payload: Any, credentials: str) -> None:
    body = json.dumps(payload).encode()
    header = "X-PagerDuty-Signature" if source == "pagerduty" else "Authorization"
    assert check(served, source, body, {header: credentials} if credentials else {}) == 401


@pytest.mark.parametrize("source", SOURCES)
def test_huge_and_deeply_nested_bodies_are_refused(served: ServedBot, source: str) -> None:
    too_big = b'{"groupKey": "g", "alerts": [' + b'{"status": "firing"},' * (MAX_BODY // 20) + b"{}]}"
    assert check(served, source, too_big, headers_for(source, too_big)) == 413
    bomb = gzip.compress(b" " * (64 * MAX_BODY))  # 64 MiB once inflated, 64 KiB on the wire
    assert check(served, source, bomb, {**headers_for(source, bomb), "Content-Encoding": "gzip"}) in (400, 401, 413)
    deep = b"[" * 100_000 + b"]" * 100_000
    assert check(served, source, deep, headers_for(source, deep)) in (400, 413)
    many = [{"name": f"A{i}", "group": "big", "labels": {f"k{j}": "v" * 50 for j in range(40)}} for i in range(300)]
    body = json.dumps(many).encode()  # just under the limit
    assert len(body) < MAX_BODY
    assert check(served, source, body, headers_for(source, body)) == (200 if source == "generic" else 400)


texts = st.text(max_size=40)
slack_events = st.fixed_dictionaries(
    {
        "type": st.just("event_callback"),
        "event_id": texts,
        "team_id": texts,
        "event": st.fixed_dictionaries(
            {"type": st.sampled_from(["app_mention", "message", "reaction_added", "reaction_removed", "x"])},
            optional={
                **dict.fromkeys(("user", "channel", "ts", "thread_ts", "reaction", "bot_id", "subtype"), texts),
                "text": st.text(max_size=200),
                "channel_type": st.sampled_from(["im", "channel"]),
                "item": st.fixed_dictionaries(
                    {"type": st.sampled_from(["message", "file"]), "channel": texts, "ts": texts}
                ),
            },
        ),
    }
)
slack_actions = st.fixed_dictionaries(
    {
        "type": st.just("block_actions"),
        "user": st.fixed_dictionaries({"id": texts}),
        "trigger_id": texts,
        "channel": st.fixed_dictionaries({"id": texts}),
        "actions": st.lists(
            st.fixed_dictionaries(
                {
                    "action_id": st.sampled_from([FEEDBACK_UP, FEEDBACK_DOWN, EDIT_WORKFLOW, FLAG_STEP, ESCALATE]),
                    "block_id": texts,
                    "value": texts | st.integers(0, 3).map(str),
                    "type": st.just("button"),
                }
            ),
            min_size=1,
            max_size=1,
        ),
    }
)
slack_bodies = st.one_of(
    slack_events.map(lambda e: ("application/json", json.dumps(e))),
    slack_actions.map(
        lambda a: ("application/x-www-form-urlencoded", urllib.parse.urlencode({"payload": json.dumps(a)}))
    ),
    st.dictionaries(st.sampled_from(["command", "text", "user_id", "channel_id", "trigger_id"]), texts).map(
        lambda form: ("application/x-www-form-urlencoded", urllib.parse.urlencode({**form, "command": "/opsflow"}))
    ),
)


def signed(text: str, secret: str = SECRET) -> dict[str, str]:
    ts = str(int(time.time()))
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": SignatureVerifier(secret).generate_signature(timestamp=ts, body=text),
    }


@FUZZ
@given(body=slack_bodies)
def test_signed_slack_requests_with_odd_values_are_never_a_500(served: ServedBot, body: tuple[str, str]) -> None:
    content_type, text = body
    status, reply = served.post(
        "/slack/events", text.encode("utf-8", "surrogatepass"), {"Content-Type": content_type, **signed(text)}
    )
    assert status < 500, reply[:300]


@FUZZ
@given(
    body=slack_bodies
    | st.tuples(st.sampled_from(["application/json", "application/x-www-form-urlencoded", ""]), st.text()),
    secret=st.sampled_from(["", "not-the-secret"]),
)
def test_unsigned_or_forged_slack_requests_are_refused(served: ServedBot, body: tuple[str, str], secret: str) -> None:
    content_type, text = body
    headers = {"Content-Type": content_type, **(signed(text, secret) if secret else {})}
    status, reply = served.post("/slack/events", text.encode("utf-8", "surrogatepass"), headers)
    assert status in (400, 401), reply[:300]


@pytest.mark.parametrize(
    ("content_type", "body", "sign"),
    [
        # Bolt parses a body before it checks its signature, and trusts the shape of a signed one.
        pytest.param("application/json", "not json", False, id="unsigned-not-json"),
        pytest.param("application/x-www-form-urlencoded", "payload=not-json", False, id="unsigned-form-payload"),
        pytest.param(
            "application/json",
            json.dumps({"type": "event_callback", "event_id": "E1", "event": [1]}),
            True,
            id="event-not-an-object",
        ),
        pytest.param(
            "application/json",
            json.dumps(
                {
                    "type": "event_callback",
                    "event_id": "E2",
                    "event": {"type": "reaction_added", "reaction": "+1", "item": [1]},
                }
            ),
            True,
            id="reaction-item-not-an-object",
        ),
    ],
)
def test_malformed_slack_bodies_are_refused_without_a_500(
    served: ServedBot, content_type: str, body: str, sign: bool
) -> None:
    headers = {"Content-Type": content_type, **(signed(body) if sign else {})}
    status, reply = served.post("/slack/events", body.encode(), headers)
    assert status < 500 and (sign or status in (400, 401)), reply[:300]


def test_the_bot_still_answers_and_accounts_for_every_alert_it_took(served: ServedBot) -> None:
    body = json.dumps(SAMPLES["alertmanager"]).encode()
    assert check(served, "alertmanager", body, headers_for("alertmanager", body)) == 200
    assert served.get("/healthz") == 200
    records = served.running.bot.kb.records
    served.call(asyncio.wait_for(served.running.bot.alerts.idle(), 25))
    assert served.call(records.unposted_alerts()) == [], "every alert stored reached Slack"
    assert served.running.bot.alerts.backlog == 0
