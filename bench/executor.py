"""The executor's speed: a run of 10 read steps sequential vs concurrent, and its overhead per step.

The steps probe a loopback HTTP server that answers after ``--latency-ms`` (100 by default); the
record store is SQLite in a temporary directory. Overhead per step is the run's time minus the
time the same probes take when called directly, divided by the steps.

    .venv/bin/python -m bench.executor [--steps 10] [--latency-ms 100] [--repeat 5] [--overhead-steps 29]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from aiohttp import web

from bot.executor import Executor
from connectors.tools import Toolbox
from core.settings import ToolSettings
from core.types import Action, Citation, Step, Workflow
from trainer.store import RecordStore


def workflow(url: str, steps: int, *, probes: bool = True) -> Workflow:
    cite = (Citation(doc_id="bench.md", chunk_id="bench.md#0"),)
    action = Action(tool="http_probe", args={"url": url}, mode="read") if probes else None
    body = [
        Step(id=f"s{n}", type="process", text=f"Check {n}", next=f"s{n + 1}", citations=cite, action=action)
        for n in range(1, steps + 1)
    ]
    return Workflow(
        title="bench", steps=(*body, Step(id=f"s{steps + 1}", type="terminal", text="done", citations=cite))
    )


async def serve(latency_s: float) -> tuple[web.AppRunner, str]:
    async def probe(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("s", latency_s)))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/probe", probe)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}/probe"


async def timed_runs(executor: Executor, flow: Workflow, repeat: int) -> float:
    """Median wall time of ``repeat`` runs, in ms."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        report = await executor.run(flow, query="bench", user="bench")
        times.append((time.perf_counter() - started) * 1000)
        assert report.state == "finished", report.events[-1]
    return statistics.median(times)


async def main(steps: int, latency_ms: float, repeat: int, many: int) -> None:
    runner, url = await serve(latency_ms / 1000)
    with tempfile.TemporaryDirectory() as tmp:
        records = RecordStore(f"sqlite:///{Path(tmp) / 'records.sqlite'}")
        base = {"http_probe_hosts": ("127.0.0.1",), "step_timeout_s": 10.0}
        results = {}
        for name, limit in (("sequential (concurrency 1)", 1), ("concurrent (concurrency 10)", steps)):
            cfg = ToolSettings(**base, concurrency=limit)
            results[name] = await timed_runs(Executor(records, Toolbox(cfg), cfg, None), workflow(url, steps), repeat)
        fast_url = f"{url}?s=0"
        cfg = ToolSettings(**base, concurrency=1)
        executor, toolbox = Executor(records, Toolbox(cfg), cfg, None), Toolbox(cfg)
        await timed_runs(executor, workflow(fast_url, steps), 1)  # warm up: engine, tables, imports
        fixed_ms = await timed_runs(executor, workflow(fast_url, 0), repeat)
        run_ms = await timed_runs(executor, workflow(fast_url, many), repeat)
        direct = []
        for _ in range(repeat):
            started = time.perf_counter()
            for _ in range(many):
                await toolbox.call(Action(tool="http_probe", args={"url": fast_url}, mode="read"))
            direct.append((time.perf_counter() - started) * 1000)
        await records.aclose()
    await runner.cleanup()
    direct_ms = statistics.median(direct)
    sequential = results["sequential (concurrency 1)"]
    print(f"{steps} read steps, probe latency {latency_ms:g} ms, median of {repeat} runs")
    for name, ms in results.items():
        print(f"  {name:<28} {ms:8.1f} ms")
    print(f"  speed-up                     {sequential / min(results.values()):8.1f}x")
    print("executor overhead (instant probes, sequential)")
    print(f"  per run (a one-step workflow) {fixed_ms:7.1f} ms  (record-store commits)")
    print(f"  run of {many} probes {run_ms:.1f} ms; the same probes called directly {direct_ms:.1f} ms")
    print(f"  per step                     {(run_ms - fixed_ms - direct_ms) / many:8.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--overhead-steps", type=int, default=29, help="Instant probes (a workflow has 30 steps at most)."
    )
    args = parser.parse_args()
    asyncio.run(main(args.steps, args.latency_ms, args.repeat, args.overhead_steps))
