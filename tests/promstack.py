"""Real Prometheus and Alertmanager for tests, on free loopback ports in a temporary directory.

The Debian binaries ``/usr/bin/prometheus`` and ``/usr/bin/prometheus-alertmanager`` (apt packages
``prometheus`` and ``prometheus-alertmanager``; ``.ci/run`` installs them) are started as they are
in production; a test that needs one skips, saying how to install it, when it is missing.

    with metrics_endpoint() as metrics, alertmanager(tmp_path, webhook_url=hook) as am, prometheus(
        tmp_path, scrape_targets=[metrics.target], rules_yaml=RULES, alertmanager_url=am.url
    ) as prom:
        metrics.set("opsflow_test_value", 2)   # a rule on it fires; set it back and it resolves

Everything here blocks. From an async test, enter the context managers through ``off_loop`` so the
event loop (and the loopback servers it runs) keeps serving while a server starts and stops. A
server's log is written to ``<dir>/<name>.log``; it is printed when the test body fails and quoted
when the server does not start. The subprocesses get no ``*_proxy`` variables, so their loopback
traffic never goes to a proxy. Not a conftest: import what you need.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")

_SYSTEM_BIN = Path("/usr/bin")
_PACKAGES = {"prometheus": "prometheus", "prometheus-alertmanager": "prometheus-alertmanager"}
_LOG_TAIL = 4000


@dataclass(frozen=True)
class Server:
    """A running server: its base URL (``http://127.0.0.1:PORT``) and where its log goes."""

    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def prometheus(
    tmp_path: Path,
    *,
    scrape_targets: Sequence[str] = (),
    rules_yaml: str | None = None,
    alertmanager_url: str | None = None,
    evaluation_interval: str = "1s",
    scrape_interval: str = "1s",
    start_timeout_s: float = 30.0,
) -> Iterator[Server]:
    """Prometheus scraping ``scrape_targets`` (``host:port``, path ``/metrics``) every ``scrape_interval``.

    ``rules_yaml`` is a rule file's text (``groups: [...]``). Alerts go to ``alertmanager_url`` and
    are re-sent every ``evaluation_interval`` (not every minute, the default), so an Alertmanager
    never expires a firing alert between two evaluations. Prometheus hands static targets and
    Alertmanagers over from its discovery manager on a 5 s tick: the first scrape, and the first
    alert sent, come about 5 s after it is ready.
    """
    binary = _binary("prometheus")
    workdir = Path(tempfile.mkdtemp(prefix="prometheus-", dir=tmp_path))
    config: dict[str, object] = {
        # The scrape timeout may not exceed the interval, and its default (10 s) would.
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": evaluation_interval,
        },
        "scrape_configs": [{"job_name": "opsflow-test", "static_configs": [{"targets": list(scrape_targets)}]}],
    }
    if rules_yaml is not None:
        (workdir / "rules.yml").write_text(rules_yaml)
        config["rule_files"] = [str(workdir / "rules.yml")]
    if alertmanager_url is not None:
        config["alerting"] = {"alertmanagers": [_alertmanager_target(alertmanager_url)]}
    (workdir / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML: no quoting to get wrong

    def argv(port: int) -> list[str]:
        return [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--rules.alert.resend-delay={evaluation_interval}",
        ]

    with _serve("prometheus", argv, workdir, start_timeout_s) as server:
        yield server


@contextlib.contextmanager
def alertmanager(
    tmp_path: Path,
    *,
    webhook_url: str,
    group_wait: str = "1s",
    group_interval: str = "1s",
    repeat_interval: str = "1h",
    bearer_token: str | None = None,
    group_by: Sequence[str] = ("alertname",),
    resolve_timeout: str = "5m",
    start_timeout_s: float = 30.0,
) -> Iterator[Server]:
    """Alertmanager with one webhook receiver (``send_resolved``) for every alert, gossip disabled.

    ``bearer_token`` makes it send ``Authorization: Bearer <token>`` with each notification.
    """
    binary = _binary("prometheus-alertmanager")
    workdir = Path(tempfile.mkdtemp(prefix="alertmanager-", dir=tmp_path))
    webhook: dict[str, object] = {"url": webhook_url, "send_resolved": True}
    if bearer_token is not None:
        webhook["http_config"] = {"authorization": {"type": "Bearer", "credentials": bearer_token}}
    config = {
        "global": {"resolve_timeout": resolve_timeout},
        "route": {
            "receiver": "webhook",
            "group_by": list(group_by),
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
        },
        "receivers": [{"name": "webhook", "webhook_configs": [webhook]}],
    }
    (workdir / "alertmanager.yml").write_text(json.dumps(config))

    def argv(port: int) -> list[str]:
        return [
            binary,
            f"--config.file={workdir / 'alertmanager.yml'}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=debug",  # logs each notification attempt: what a failing test needs to see
        ]

    with _serve("alertmanager", argv, workdir, start_timeout_s) as server:
        yield server


class MetricsEndpoint:
    """Gauges in Prometheus' text format at ``http://<target>/metrics``; ``set`` changes them at any time."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._lock = threading.Lock()

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._values[(name, tuple(sorted(labels.items())))] = value

    def remove(self, name: str, **labels: str) -> None:
        with self._lock:
            self._values.pop((name, tuple(sorted(labels.items()))), None)

    def render(self) -> str:
        with self._lock:
            values = sorted(self._values.items())
        lines = []
        for (name, labels), value in values:
            pairs = ",".join(f'{key}="{_escape(val)}"' for key, val in labels)
            lines.append(f"{name}{{{pairs}}} {value!r}")
        return "\n".join(lines) + "\n"


@contextlib.contextmanager
def metrics_endpoint() -> Iterator[MetricsEndpoint]:
    """A loopback HTTP server in a thread serving a ``MetricsEndpoint`` for Prometheus to scrape."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = endpoint.render().encode()
            self.send_response(200 if self.path.split("?")[0] == "/metrics" else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # one line per scrape would drown the test output

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    endpoint = MetricsEndpoint(f"127.0.0.1:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield endpoint
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@contextlib.asynccontextmanager
async def off_loop(manager: contextlib.AbstractContextManager[T]) -> AsyncIterator[T]:
    """Enter and leave a blocking context manager in a worker thread, for async tests."""
    value = await asyncio.to_thread(manager.__enter__)
    try:
        yield value
    except BaseException:
        if not await asyncio.to_thread(manager.__exit__, *sys.exc_info()):
            raise
    else:
        await asyncio.to_thread(manager.__exit__, None, None, None)


def _binary(name: str) -> str:
    path = shutil.which(name) or str(_SYSTEM_BIN / name)
    if not os.access(path, os.X_OK):
        pytest.skip(f"{name} is not installed: apt-get install {_PACKAGES[name]}")
    return path


def _alertmanager_target(url: str) -> dict[str, object]:
    parts = urllib.parse.urlsplit(url)
    return {
        "scheme": parts.scheme or "http",
        "path_prefix": parts.path or "/",
        "static_configs": [{"targets": [parts.netloc]}],
    }


@contextlib.contextmanager
def _serve(name: str, argv: Callable[[int], list[str]], workdir: Path, timeout_s: float) -> Iterator[Server]:
    log_path = workdir / f"{name}.log"
    for attempt in range(3):  # another process may take the free port before the server binds it
        port = _free_port()
        proc = _spawn(argv(port), workdir, log_path)
        server = Server(f"http://127.0.0.1:{port}", log_path)
        if _wait_ready(proc, server.url, timeout_s):
            break
        _stop(proc)
        if attempt == 2 or "address already in use" not in server.log():
            raise RuntimeError(f"{name} did not become ready within {timeout_s}s; {_tail(log_path)}")
    try:
        yield server
    except pytest.skip.Exception:
        raise
    except BaseException:
        print(f"\n{name} at {server.url}, {_tail(log_path)}", file=sys.stderr)
        raise
    finally:
        _stop(proc)


def _spawn(argv: list[str], workdir: Path, log_path: Path) -> subprocess.Popen[bytes]:
    env = {key: value for key, value in os.environ.items() if not key.lower().endswith("_proxy")}
    with log_path.open("ab") as log:
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        return subprocess.Popen(argv, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, timeout_s: float) -> bool:
    """Poll ``/-/ready`` (both servers' documented readiness probe) until 200, exit or timeout."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with opener.open(f"{url}/-/ready", timeout=1) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(log_path: Path) -> str:
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return f"log {log_path}:\n{text[-_LOG_TAIL:]}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
