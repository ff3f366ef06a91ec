"""The tool catalogue and the toolbox: allowlists, refusals, no shell, caps, deadlines, HTTP probes.

Commands are real coreutils processes; HTTP targets are a loopback aiohttp server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import ValidationError

from connectors.tools import Toolbox, catalogue
from core.settings import Settings, ToolSettings
from core.types import Action

PATH = {"PATH": "/usr/bin:/bin"}
TEST_COMMANDS = (("echo",), ("printf",), ("sleep",), ("seq",), ("env",), ("opsflow-no-such-program",))


def read(tool: str, **args: Any) -> Action:
    return Action(tool=tool, args=args, mode="read")


def toolbox(**cfg: Any) -> Toolbox:
    values: dict[str, Any] = {"commands": TEST_COMMANDS, "command_env": PATH, "step_timeout_s": 2.0} | cfg
    return Toolbox(ToolSettings(**values))


# -- the catalogue -----------------------------------------------------------------------------


def test_only_configured_tools_are_offered_and_the_catalogue_sets_their_mode() -> None:
    assert {name: t.mode for name, t in catalogue(ToolSettings()).items()} == {
        "command": "read",
        "write_command": "write",
    }
    full = catalogue(
        ToolSettings(
            prometheus_url="http://prom:9090", http_probe_hosts=("api.internal",), webhooks={"page": "http://x"}
        )
    )
    assert {name: t.mode for name, t in full.items()} == {
        "prometheus_query": "read",
        "prometheus_range_query": "read",
        "http_probe": "read",
        "command": "read",
        "write_command": "write",
        "webhook": "write",
    }
    assert catalogue(ToolSettings(commands=(), write_commands=())) == {}


def test_a_read_allowlist_entry_that_would_allow_a_write_is_a_configuration_error() -> None:
    with pytest.raises(ValidationError, match="would allow the write command"):
        ToolSettings(commands=(("kubectl",),))
    with pytest.raises(ValidationError, match="non-empty"):
        ToolSettings(commands=((),))


def test_tool_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSFLOW_TOOLS__PROMETHEUS_URL", "http://prom:9090")
    monkeypatch.setenv("OPSFLOW_TOOLS__HTTP_PROBE_HOSTS", "API.internal, status.internal:8080")
    monkeypatch.setenv("OPSFLOW_TOOLS__COMMANDS", '[["kubectl", "get"], ["dig"]]')
    monkeypatch.setenv("OPSFLOW_TOOLS__APPROVERS", '{"C1": ["U1", "U2"]}')
    monkeypatch.setenv("OPSFLOW_TOOLS__AUTO_CHECK_CHANNELS", "C1,C2")
    tools = Settings(_env_file=None).tools  # type: ignore[call-arg]
    assert tools.prometheus_url == "http://prom:9090"
    assert tools.http_probe_hosts == ("api.internal", "status.internal:8080")
    assert tools.commands == (("kubectl", "get"), ("dig",))
    assert tools.approvers == {"C1": ("U1", "U2")}
    assert tools.auto_check_channels == ("C1", "C2")


@pytest.mark.parametrize(
    ("argv", "allowed"),
    [
        (["kubectl", "get", "pods", "-n", "payments"], True),
        (["kubectl", "describe", "pod", "orders-1"], True),
        (["kubectl", "logs", "orders-1", "--previous"], True),
        (["dig", "+short", "api.internal"], True),
        (["ping", "-c", "3", "db"], True),
        (["kubectl", "delete", "pod", "orders-1"], False),
        (["kubectl", "exec", "-it", "orders-1", "--", "sh"], False),
        (["kubectl"], False),
        (["ping", "db"], False),  # only the counted form
        (["/usr/bin/kubectl", "get", "pods"], False),  # the program is named, not a path
        (["sh", "-c", "kubectl get pods"], False),
        (["bash", "-c", "rm -rf /"], False),
        (["rm", "-rf", "/"], False),
        (["kubectl", "rollout", "restart", "deploy/orders"], False),  # a write is not a read
    ],
)
def test_read_command_allowlist(argv: list[str], allowed: bool) -> None:
    spec = catalogue(ToolSettings())["command"]
    assert (spec.problem({"argv": argv}) is None) is allowed
    assert spec.accepts({"argv": argv}) is allowed  # the quick check the catalogue match uses agrees


@pytest.mark.parametrize(
    ("argv", "allowed"),
    [
        (["kubectl", "rollout", "restart", "deployment/orders", "-n", "shop"], True),
        (["kubectl", "scale", "deployment/orders", "--replicas=4"], True),
        (["kubectl", "delete", "namespace", "shop"], False),
        (["kubectl", "get", "pods"], False),
    ],
)
def test_write_command_allowlist(argv: list[str], allowed: bool) -> None:
    spec = catalogue(ToolSettings())["write_command"]
    assert (spec.problem({"argv": argv}) is None) is allowed
    assert spec.accepts({"argv": argv}) is allowed  # the quick check the catalogue match uses agrees


# -- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "why"),
    [
        (read("command", argv=["rm", "-rf", "/"]), "not allowed"),
        (read("command", argv=["kubectl", "delete", "pod", "x"]), "not allowed"),
        (read("command", argv="echo hi"), "is not of type 'array'"),
        (read("command", argv=[]), "argv"),
        (read("command", argv=["echo", "hi"], shell=True), "Additional properties"),
        (read("shell", argv=["echo", "hi"]), "not a configured tool"),
        (read("prometheus_query", query="up"), "not a configured tool"),  # no Prometheus configured
        (read("write_command", argv=["kubectl", "scale", "deploy/x", "--replicas=0"]), "only once approved"),
    ],
)
async def test_calls_outside_the_catalogue_or_its_allowlists_are_refused(action: Action, why: str) -> None:
    result = await toolbox().call(action)
    assert result.status == "refused"
    assert why in result.summary


async def test_shell_metacharacters_are_handed_to_the_program_as_plain_characters(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    words = ["a;", "touch", str(marker), "|", "id", "$(id)", f"`touch {marker}`", "&&", f">{marker}", "*"]
    result = await toolbox().call(read("command", argv=["echo", *words]))
    assert result.status == "ok"
    assert result.summary == " ".join(words)
    assert not marker.exists()


async def test_commands_get_only_the_configured_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSFLOW_SLACK__BOT_TOKEN", "xoxb-must-not-leak-0123456789")
    monkeypatch.setenv("SECRET_IN_PARENT", "leak")
    result = await toolbox(command_env={**PATH, "KUBECONFIG": "/etc/kube/config"}).call(read("command", argv=["env"]))
    assert result.status == "ok"
    assert sorted(result.summary.splitlines()) == ["KUBECONFIG=/etc/kube/config", "PATH=/usr/bin:/bin"]


async def test_output_is_capped_and_the_command_stopped() -> None:
    started = time.perf_counter()
    result = await toolbox(output_bytes=4096).call(read("command", argv=["seq", "1", "100000000"]))
    assert time.perf_counter() - started < 5  # seq alone would run for a minute
    assert result.status == "ok" and result.data is not None
    assert result.data["capped"] is True and result.data["bytes"] == 4096
    assert "output capped at 4096 bytes" in result.summary
    assert len(result.summary) <= 1600  # condensed for people and models


async def test_a_command_past_its_deadline_is_killed_and_reported_as_timeout() -> None:
    started = time.perf_counter()
    result = await toolbox(step_timeout_s=0.3).call(read("command", argv=["sleep", "30"]))
    assert result.status == "timeout" and "stopped after 0.3 s" in result.summary
    assert time.perf_counter() - started < 3


async def test_a_failing_command_is_an_error_value_with_its_output() -> None:
    result = await toolbox().call(read("command", argv=["seq", "not-a-number"]))
    assert result.status == "error"
    assert "exit status 1" in result.summary and "invalid" in result.summary
    missing = await toolbox().call(read("command", argv=["opsflow-no-such-program"]))
    assert missing.status == "error" and "not found" in missing.summary


async def test_a_write_runs_only_when_approved(tmp_path: Path) -> None:
    target = tmp_path / "restarted"
    box = toolbox(write_commands=(("touch",),))
    # A workflow may claim the write is a read: the catalogue decides.
    claimed_read = await box.call(read("write_command", argv=["touch", str(target)]))
    assert claimed_read.status == "refused" and not target.exists()
    approved = await box.call(
        Action(tool="write_command", args={"argv": ["touch", str(target)]}, mode="write"), approved_by="U1"
    )
    assert approved.status == "ok" and target.exists()


async def test_secrets_in_command_output_are_redacted() -> None:
    result = await toolbox().call(read("command", argv=["echo", "password=hunter2", "token=xoxb-123456789012-abcdef"]))
    assert "hunter2" not in result.summary and "xoxb-1234" not in result.summary


# -- HTTP probe and webhook --------------------------------------------------------------------


@pytest.fixture
async def target() -> AsyncIterator[TestServer]:
    hooks: list[Any] = []

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def down(request: web.Request) -> web.Response:
        return web.Response(status=503, text="no healthy upstream; Authorization: Bearer abcdefghijklmnop")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("s", "2")))
        return web.Response(text="late")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://127.0.0.2:9/elsewhere")

    async def hook(request: web.Request) -> web.Response:
        hooks.append(await request.json())
        return web.json_response({"accepted": True}, status=int(request.query.get("status", "200")))

    app = web.Application()
    app.router.add_get("/healthz", ok)
    app.router.add_get("/down", down)
    app.router.add_get("/slow", slow)
    app.router.add_get("/redirect", redirect)
    app.router.add_post("/hook", hook)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    server.hooks = hooks  # type: ignore[attr-defined]
    yield server
    await server.close()


def probe_box(**cfg: Any) -> Toolbox:
    return toolbox(http_probe_hosts=("127.0.0.1",), **cfg)


async def test_probe_reports_status_and_latency(target: TestServer) -> None:
    box = probe_box()
    up = await box.call(read("http_probe", url=str(target.make_url("/healthz"))))
    down = await box.call(read("http_probe", url=str(target.make_url("/down"))))
    slow = await box.call(read("http_probe", url=str(target.make_url("/slow?s=0.2"))))
    assert up.status == "ok" and up.data is not None and up.data["status"] == 200 and up.data["values"] == [200.0]
    assert "→ 200 OK in" in up.summary
    # The service answering 503 is a successful probe: the 503 is the observation.
    assert down.status == "ok" and down.data is not None and down.data["status"] == 503
    assert "503 Service Unavailable" in down.summary and "abcdefghijklmnop" not in down.summary
    assert slow.data is not None and slow.data["latency_ms"] >= 190


async def test_probe_timeouts_and_connection_failures_are_values(target: TestServer) -> None:
    box = probe_box(step_timeout_s=0.3)
    late = await box.call(read("http_probe", url=str(target.make_url("/slow?s=5"))))
    closed = await box.call(read("http_probe", url="http://127.0.0.1:9/healthz"))
    assert late.status == "timeout" and late.duration_ms < 2000
    assert closed.status == "error" and "127.0.0.1:9" in closed.summary


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/healthz",
        "http://127.0.0.1.evil.example/",
        "http://127.0.0.1@evil.example/",
        "http://user:pw@127.0.0.1/",
        "file:///etc/passwd",
        "ftp://127.0.0.1/",
    ],
)
async def test_probe_refuses_hosts_outside_its_allowlist(target: TestServer, url: str) -> None:
    result = await probe_box().call(read("http_probe", url=url))
    assert result.status == "refused"


async def test_probe_does_not_follow_redirects_off_its_host(target: TestServer) -> None:
    box = probe_box()
    result = await box.call(read("http_probe", url=str(target.make_url("/redirect"))))
    assert result.status == "ok" and result.data is not None and result.data["status"] == 302


async def test_webhook_is_a_write_posted_only_when_approved(target: TestServer) -> None:
    hooks = {
        "failover": str(target.make_url("/hook?token=sekrit-in-url")),
        "broken": str(target.make_url("/hook?status=500")),
    }
    box = toolbox(webhooks=hooks)
    call = Action(tool="webhook", args={"name": "failover", "payload": {"region": "eu"}}, mode="write")
    refused = await box.call(call)
    assert refused.status == "refused" and target.hooks == []  # type: ignore[attr-defined]
    done = await box.call(call, approved_by="U1")
    failed = await box.call(call.model_copy(update={"args": {"name": "broken"}}), approved_by="U1")
    unknown = await box.call(call.model_copy(update={"args": {"name": "nope"}}), approved_by="U1")
    assert done.status == "ok" and "webhook failover → 200" in done.summary and "sekrit" not in done.summary
    assert target.hooks == [{"region": "eu"}, {}]  # type: ignore[attr-defined]
    assert failed.status == "error"
    assert unknown.status == "refused"
