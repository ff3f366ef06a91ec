"""Prometheus queries (HTTP API ``/api/v1/query`` and ``/api/v1/query_range``) as read tools.

Results are values: an empty vector is ``no_data``, a query Prometheus rejects is ``error``. The
numbers a decision rule reads are in ``data["values"]``: one per series (its latest sample for a
range query); non-finite samples (NaN, ±Inf) are shown but never compared.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import aiohttp

from connectors._http import read_capped
from connectors.redaction import condensed
from core.types import ToolResult

MAX_SERIES = 50  # kept in data; the summary shows fewer
SHOWN_SERIES = 10


async def query(session: aiohttp.ClientSession, base_url: str, expr: str, *, timeout_s: float, cap: int) -> ToolResult:
    """The instant value of ``expr`` now."""
    return await _call(session, f"{base_url.rstrip('/')}/api/v1/query", {"query": expr}, timeout_s, cap)


async def query_range(
    session: aiohttp.ClientSession, base_url: str, expr: str, *, minutes: int, step_s: int, timeout_s: float, cap: int
) -> ToolResult:
    """``expr`` over the last ``minutes``, one sample every ``step_s`` seconds."""
    end = time.time()
    params = {"query": expr, "start": f"{end - minutes * 60:.3f}", "end": f"{end:.3f}", "step": str(step_s)}
    return await _call(session, f"{base_url.rstrip('/')}/api/v1/query_range", params, timeout_s, cap)


async def _call(
    session: aiohttp.ClientSession, url: str, params: dict[str, str], timeout_s: float, cap: int
) -> ToolResult:
    try:
        async with session.get(url, params=params, timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
            body, more = await read_capped(response, cap)
    except TimeoutError:
        return ToolResult(status="timeout", summary=f"Prometheus did not answer within {timeout_s:g} s")
    except aiohttp.ClientError as exc:
        return ToolResult(status="error", summary=condensed(f"Prometheus unreachable: {exc}"))
    if more:
        return ToolResult(status="error", summary=f"the result is over {cap} bytes: narrow the query (topk, sum by)")
    try:
        reply = json.loads(body)
    except ValueError:
        return ToolResult(status="error", summary=condensed(f"not a Prometheus answer ({response.status}): {body!r}"))
    if reply.get("status") != "success":
        problem = f"{reply.get('errorType', response.status)}: {reply.get('error', 'unknown error')}"
        return ToolResult(status="error", summary=condensed(f"Prometheus refused the query: {problem}"))
    return _result(reply.get("data", {}), len(body))


def _result(data: dict[str, Any], size: int) -> ToolResult:
    kind, raw = data.get("resultType"), data.get("result") or []
    series: list[dict[str, Any]]
    if kind in ("scalar", "string"):
        series = [{"labels": "", "value": _sample(raw[1])}]
    elif kind == "vector":
        series = [{"labels": _labels(s["metric"]), "value": _sample(s["value"][1])} for s in raw]
    elif kind == "matrix":
        series = [_range_series(s) for s in raw if s.get("values")]
    else:
        return ToolResult(status="error", summary=f"unexpected result type {kind!r}")
    if not series:
        return ToolResult(status="no_data", summary="no series matched", data={"result_type": kind, "values": []})
    values = [v for s in series if isinstance(v := s["value"], float)]
    lines = [f"{s['labels'] or '(value)'} {s['value']}{s.get('range', '')}" for s in series[:SHOWN_SERIES]]
    if len(series) > SHOWN_SERIES:
        lines.append(f"… and {len(series) - SHOWN_SERIES} more series")
    data_out = {"result_type": kind, "series": series[:MAX_SERIES], "values": values, "bytes": size}
    return ToolResult(status="ok", summary=condensed("\n".join(lines)), data=data_out)


def _range_series(s: dict[str, Any]) -> dict[str, Any]:
    samples = [_sample(v) for _, v in s["values"]]
    finite = [v for v in samples if isinstance(v, float)]
    spread = f" (min {min(finite):g}, max {max(finite):g}, {len(samples)} samples)" if finite else ""
    return {"labels": _labels(s["metric"]), "value": samples[-1], "range": spread}


def _sample(text: str) -> float | str:
    """A finite sample as a float; NaN, ±Inf and strings stay text (JSON has no such numbers)."""
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def _labels(metric: dict[str, str]) -> str:
    name = metric.get("__name__", "")
    pairs = ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
    return f"{name}{{{pairs}}}" if pairs else name
