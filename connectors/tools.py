"""The tool catalogue a deployment offers workflow steps, and the toolbox that runs calls.

The catalogue is built from ``ToolSettings`` alone: a tool exists, and is read or write, because the
deployment configured it, never because a document, an alert or a model said so. The allowlists
are part of each tool's argument schema, so the planner's validation and the toolbox refuse the
same calls. Every call returns a ``ToolResult``; a write tool runs only when the caller says who
approved it (the executor holds the approval gate; this is the second lock).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from connectors import commands, probes, prometheus
from core.settings import ToolSettings
from core.types import Action, ToolResult, ToolSpec

PROMETHEUS_QUERY = "prometheus_query"
PROMETHEUS_RANGE = "prometheus_range_query"
HTTP_PROBE = "http_probe"
COMMAND = "command"
WRITE_COMMAND = "write_command"
WEBHOOK = "webhook"

_PROMQL = {"type": "string", "minLength": 1, "maxLength": 2000, "description": "A PromQL expression."}


def _arguments(required: Sequence[str], **properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


def _argv(prefixes: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Program and arguments, starting word for word with one of the allowlisted ``prefixes``."""
    return {
        "type": "array",
        "minItems": 1,
        "maxItems": 64,
        "items": {"type": "string", "minLength": 1, "maxLength": 1000},
        "anyOf": [{"prefixItems": [{"const": word} for word in p], "minItems": len(p)} for p in prefixes],
        "description": "argv starting with one of: " + "; ".join(" ".join(p) for p in prefixes),
    }


def _url(hosts: Sequence[str]) -> dict[str, Any]:
    names = "|".join(re.escape(h) for h in hosts)
    return {"type": "string", "maxLength": 2000, "pattern": rf"^https?://({names})(:[0-9]+)?([/?#]|$)"}


def catalogue(cfg: ToolSettings) -> dict[str, ToolSpec]:
    """The tools this deployment offers, by name: only what is configured appears."""
    specs: list[ToolSpec] = []
    if cfg.prometheus_url:
        window = {"type": "integer", "minimum": 1, "maximum": 10_080, "description": "Minutes back from now."}
        step = {"type": "integer", "minimum": 1, "maximum": 3600, "description": "Seconds between samples."}
        specs += [
            ToolSpec(
                name=PROMETHEUS_QUERY,
                description="Evaluate a PromQL expression now; gives the value of each series.",
                mode="read",
                args=_arguments(["query"], query=_PROMQL),
            ),
            ToolSpec(
                name=PROMETHEUS_RANGE,
                description="Evaluate a PromQL expression over the last minutes; gives each series' latest value, "
                "minimum and maximum.",
                mode="read",
                args=_arguments(["query"], query=_PROMQL, minutes=window, step_s=step),
            ),
        ]
    if cfg.http_probe_hosts:
        specs.append(
            ToolSpec(
                name=HTTP_PROBE,
                description=f"Request a URL on {', '.join(cfg.http_probe_hosts)}; gives its HTTP status and latency.",
                mode="read",
                args=_arguments(["url"], url=_url(cfg.http_probe_hosts), method={"enum": ["GET", "HEAD"]}),
            )
        )
    if cfg.commands:
        specs.append(
            ToolSpec(
                name=COMMAND,
                description="Run a read-only command (no shell): "
                + "; ".join(" ".join(p) + " …" for p in cfg.commands),
                mode="read",
                args=_arguments(["argv"], argv=_argv(cfg.commands)),
            )
        )
    if cfg.write_commands:
        specs.append(
            ToolSpec(
                name=WRITE_COMMAND,
                description="Run a command that changes the system, after an approval: "
                + "; ".join(" ".join(p) + " …" for p in cfg.write_commands),
                mode="write",
                args=_arguments(["argv"], argv=_argv(cfg.write_commands)),
            )
        )
    if cfg.webhooks:
        specs.append(
            ToolSpec(
                name=WEBHOOK,
                description=f"POST a JSON payload to a configured webhook ({', '.join(sorted(cfg.webhooks))}), "
                "after an approval.",
                mode="write",
                args=_arguments(
                    ["name"], name={"enum": sorted(cfg.webhooks)}, payload={"type": "object", "maxProperties": 50}
                ),
            )
        )
    return {spec.name: spec for spec in specs}


class Toolbox:
    """Runs tool calls for the configured catalogue.

    Each call gets its own HTTP session: a run makes a handful of calls to different hosts, so a
    pool would save little, and without one the toolbox holds nothing to close."""

    def __init__(self, cfg: ToolSettings) -> None:
        self._cfg = cfg
        self.tools = catalogue(cfg)

    async def call(self, action: Action, *, approved_by: str | None = None, cap: int | None = None) -> ToolResult:
        """Run ``action`` within the step deadline and at most ``cap`` bytes of output (default: the
        configured ones). The catalogue decides the mode: a write tool without ``approved_by`` is
        refused whatever ``action.mode`` says; so is an action with ``missing`` placeholder values.
        Never raises for the tool's own failures."""
        started = time.perf_counter()
        result = await self._call(action, approved_by, cap or self._cfg.output_bytes)
        return result.model_copy(update={"duration_ms": round((time.perf_counter() - started) * 1000, 1)})

    async def _call(self, action: Action, approved_by: str | None, cap: int) -> ToolResult:
        spec = self.tools.get(action.tool)
        if spec is None:
            return ToolResult(status="refused", summary=f"{action.tool!r} is not a configured tool")
        if spec.mode == "write" and not approved_by:
            return ToolResult(status="refused", summary=f"{spec.name} changes the system: it runs only once approved")
        if action.missing:
            return ToolResult(status="refused", summary=f"not run, needs: {', '.join(action.missing)}")
        if problem := spec.problem(action.args):
            return ToolResult(status="refused", summary=f"{spec.name}: {problem}")
        async with aiohttp.ClientSession() as http:
            return await self._dispatch(spec, action.args, http, cap)

    async def _dispatch(
        self, spec: ToolSpec, args: dict[str, Any], http: aiohttp.ClientSession, cap: int
    ) -> ToolResult:
        timeout_s, cfg = self._cfg.step_timeout_s, self._cfg
        match spec.name:
            case "prometheus_query":
                url = cfg.prometheus_url or ""
                return await prometheus.query(http, url, args["query"], timeout_s=timeout_s, cap=cap)
            case "prometheus_range_query":
                return await prometheus.query_range(
                    http,
                    cfg.prometheus_url or "",
                    args["query"],
                    minutes=args.get("minutes", 60),
                    step_s=args.get("step_s", 60),
                    timeout_s=timeout_s,
                    cap=cap,
                )
            case "http_probe":
                # The schema's pattern already holds the URL to the allowlist; parsing it again as the
                # client will is the check that cannot be fooled by an odd spelling.
                if not probes.host_allowed(args["url"], cfg.http_probe_hosts):
                    return ToolResult(status="refused", summary=f"{args['url']} is not on an allowlisted host")
                method = args.get("method", "GET")
                return await probes.probe(http, args["url"], method=method, timeout_s=timeout_s, cap=cap)
            case "command" | "write_command":
                return await commands.run_command(args["argv"], env=cfg.command_env, timeout_s=timeout_s, cap=cap)
            case "webhook":
                url = cfg.webhooks[args["name"]]
                payload = args.get("payload", {})
                return await probes.post_webhook(http, args["name"], url, payload, timeout_s=timeout_s, cap=cap)
        raise AssertionError(f"catalogue tool {spec.name} has no runner")  # a catalogue entry without a case
