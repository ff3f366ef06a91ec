"""``opsflow serve``: one aiohttp server for Slack, alert webhooks, health and metrics.

    POST /slack/events          Slack events, slash commands and interactivity (signed)
    POST /alerts/{source}       alertmanager | grafana | pagerduty | generic (token or signature)
    GET  /healthz               record store, index and model reachable
    GET  /metrics               Prometheus text format

A webhook answers 2xx only once its alerts are stored, a Slack question once it is in the inbox.
Shutdown stops taking requests, lets answers in flight finish, and leaves alerts not yet posted
stored for the next start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from sqlalchemy import text

from bot.alerting import Overloaded
from bot.app import Bot
from bot.metrics import Metrics
from connectors.alerts import PARSERS, verify_bearer, verify_pagerduty
from core.errors import AlertError, BackendUnavailable, OpsflowError

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024  # Slack's payloads are far smaller; a webhook larger than this is refused with 413
DRAIN_S = 30.0


def create_app(bot: Bot) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[_observed(bot.metrics)])
    app[BOT] = bot
    if bot.settings.slack.app_token is None:  # Socket Mode skips signature checks, so it gets no HTTP route
        app.router.add_post("/slack/events", _slack_events)
    for source in PARSERS:
        app.router.add_post(f"/alerts/{source}", _alert_webhook)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    return app


BOT = web.AppKey("bot", Bot)


def _observed(metrics: Metrics) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def observe(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        route = request.match_info.route.resource
        path = route.canonical if route is not None else "unmatched"
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            metrics.requests.labels(path=path, status=str(status)).inc()
            metrics.request_seconds.labels(path=path).observe(time.perf_counter() - started)

    return observe


async def _slack_events(request: web.Request) -> web.Response:
    bolt = request.app[BOT].slack.app
    try:
        bolt_request = await to_bolt_request(request)
    except ValueError:  # Bolt parses the body before it checks the signature
        return web.json_response({"error": "the body is not a Slack request"}, status=400)
    event = bolt_request.body.get("event", {}) if isinstance(bolt_request.body, dict) else {}
    if not isinstance(event, dict):  # Bolt trusts the shape of what it routes
        return web.json_response({"error": "event must be an object"}, status=400)
    return await to_aiohttp_response(await bolt.async_dispatch(bolt_request))


def _refuse(bot: Bot, source: str, status: int, reason: str, message: str, **headers: str) -> web.Response:
    bot.metrics.alerts_refused.labels(source=source, reason=reason).inc()
    return web.json_response({"error": message}, status=status, headers=headers)


async def _alert_webhook(request: web.Request) -> web.Response:
    bot = request.app[BOT]
    source = request.path.rsplit("/", 1)[-1]
    cfg = bot.settings.alerts
    body = await request.read()
    if source == "pagerduty":
        authentic = verify_pagerduty(body, request.headers.get("X-PagerDuty-Signature"), cfg.pagerduty_secret)
    else:
        authentic = verify_bearer(request.headers.get("Authorization"), cfg.token)
    if not authentic:
        return _refuse(bot, source, 401, "unauthorized", "missing or wrong credentials")
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return _refuse(bot, source, 400, "malformed", "the body is not JSON")
    try:
        alerts = PARSERS[source](payload)  # type: ignore[index]
    except AlertError as exc:
        return _refuse(bot, source, 400, "invalid", str(exc))
    try:
        stored = await bot.alerts.receive(alerts)
    except Overloaded as exc:
        return _refuse(bot, source, 503, "overloaded", str(exc), **{"Retry-After": "10"})
    except BackendUnavailable as exc:
        log.error("alerts not stored", extra={"source": source, "error": str(exc)})
        return _refuse(bot, source, 503, "store_down", "alerts could not be stored; retry", **{"Retry-After": "30"})
    return web.json_response({"stored": stored})


async def _healthz(request: web.Request) -> web.Response:
    bot = request.app[BOT]
    checks: dict[str, str] = {}

    async def check(name: str, probe: Awaitable[object]) -> None:
        try:
            await asyncio.wait_for(probe, timeout=5)
            checks[name] = "ok"
        except (OpsflowError, OSError, TimeoutError) as exc:
            checks[name] = f"failing: {exc}"

    await check("records", bot.kb.records.transaction(lambda s: s.execute(text("SELECT 1"))))
    await check("index", bot.kb.index.counts())
    if bot.settings.planner.kind == "llm":
        await check("model", bot.kb.chat.ping())
    else:
        checks["model"] = "not used (extractive planner)"
    healthy = all(v == "ok" or v.startswith("not used") for v in checks.values())
    body = {"status": "ok" if healthy else "failing", "checks": checks, "alert_backlog": bot.alerts.backlog}
    return web.json_response(body, status=200 if healthy else 503)


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[BOT].metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


@asynccontextmanager
async def running(bot: Bot, host: str, port: int) -> AsyncIterator[str]:
    """Serve ``bot`` on host:port (0 = any free port) until the block exits; yields the base URL."""
    # No sender of ours compresses; decoding a body that lies about its Content-Encoding ends in a 500.
    runner = web.AppRunner(create_app(bot), access_log=None, shutdown_timeout=DRAIN_S, auto_decompress=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    await bot.alerts.start()
    await bot.slack.inbox.start(bot.slack.answer)
    bound = runner.addresses[0]
    try:
        yield f"http://{bound[0]}:{bound[1]}"
    finally:
        await site.stop()  # no new requests; answers already started go on
        await bot.threads.drain(DRAIN_S)
        await bot.slack.inbox.stop()
        await bot.alerts.stop()
        await runner.cleanup()


@asynccontextmanager
async def socket_mode(bot: Bot) -> AsyncIterator[None]:
    """Take Slack's requests over a Socket Mode connection (when an app token is set) inside the block."""
    token = bot.settings.slack.app_token
    if token is None:
        yield
        return
    from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

    handler = AsyncSocketModeHandler(bot.slack.app, token.get_secret_value())
    await handler.connect_async()
    try:
        yield
    finally:
        await handler.close_async()


async def serve_forever(bot: Bot) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    cfg = bot.settings
    async with running(bot, cfg.http.host, cfg.http.port) as url, socket_mode(bot):
        log.info("serving", extra={"url": url, "socket_mode": cfg.slack.app_token is not None})
        await stop.wait()
        log.info("shutting down: finishing answers in flight")
