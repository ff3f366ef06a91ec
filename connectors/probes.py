"""HTTP tools: the probe (read: status and latency of an allowlisted URL) and the webhook (write).

Any answer is a successful probe, a 503 included: what the service said is the observation.
Connection failures are ``error``, a slow answer ``timeout``. Redirects are not followed, so a
probe never leaves its allowlisted host.
"""

from __future__ import annotations

import time
from http import HTTPStatus
from typing import Any

import aiohttp
from yarl import URL

from connectors._http import read_capped
from connectors.redaction import condensed
from core.types import ToolResult

BODY_SHOWN = 300


def host_allowed(url: str, hosts: tuple[str, ...]) -> bool:
    """Whether ``url`` is http(s) on one of ``hosts`` (``host`` or ``host:port`` entries)."""
    try:
        parsed = URL(url)
    except ValueError:
        return False
    if parsed.scheme not in ("http", "https") or not parsed.host or parsed.user or parsed.password:
        return False
    host = parsed.host.lower()
    return host in hosts or f"{host}:{parsed.port}" in hosts


async def probe(session: aiohttp.ClientSession, url: str, *, method: str, timeout_s: float, cap: int) -> ToolResult:
    """One request to ``url``: its status, latency (to the response headers) and the start of its body."""
    started = time.perf_counter()
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with session.request(method, url, allow_redirects=False, timeout=timeout) as response:
            latency_ms = (time.perf_counter() - started) * 1000
            body, _ = await read_capped(response, min(cap, BODY_SHOWN))
    except TimeoutError:
        return ToolResult(status="timeout", summary=f"{method} {url}: no answer within {timeout_s:g} s")
    except aiohttp.ClientError as exc:
        return ToolResult(status="error", summary=condensed(f"{method} {url}: {exc}"))
    reason = _reason(response.status)
    text = body.decode(errors="replace").strip()
    summary = f"{method} {url} → {response.status} {reason} in {latency_ms:.0f} ms" + (f": {text}" if text else "")
    data = {"status": response.status, "latency_ms": round(latency_ms, 1), "values": [float(response.status)]}
    return ToolResult(status="ok", summary=condensed(summary, 600), data=data)


async def post_webhook(
    session: aiohttp.ClientSession, name: str, url: str, payload: dict[str, Any], *, timeout_s: float, cap: int
) -> ToolResult:
    """POST ``payload`` as JSON to the webhook ``name``; a non-2xx answer is an error. The URL is never
    shown: webhook URLs often carry their credentials."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with session.post(url, json=payload, allow_redirects=False, timeout=timeout) as response:
            body, _ = await read_capped(response, cap)
    except TimeoutError:
        return ToolResult(status="timeout", summary=f"webhook {name}: no answer within {timeout_s:g} s")
    except aiohttp.ClientError as exc:
        return ToolResult(status="error", summary=condensed(f"webhook {name}: {type(exc).__name__}"))
    text = body.decode(errors="replace").strip()
    summary = f"webhook {name} → {response.status} {_reason(response.status)}" + (f": {text}" if text else "")
    status = "ok" if 200 <= response.status < 300 else "error"
    return ToolResult(status=status, summary=condensed(summary), data={"status": response.status})


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
