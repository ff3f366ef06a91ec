"""``opsflow serve`` as a child process for ``bench.bot_load``: started on a free loopback port, watched
for memory, stopped with SIGTERM.

A separate process, so the load generator and the fake Slack do not share the bot's interpreter (its
GIL, its event loop) and the memory figures are the bot's alone.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench._common import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak so far) of a process, in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values


@dataclass
class BotProcess:
    url: str
    pid: int
    log: Path
    peak_rss: float = 0.0  # the highest VmRSS sampled since the last ``reset_peak``

    def memory(self) -> dict[str, float]:
        return memory_mib(self.pid)

    def reset_peak(self) -> None:
        self.peak_rss = self.memory()["VmRSS"]

    async def sample(self, every: float = 0.1) -> None:
        while True:
            self.peak_rss = max(self.peak_rss, self.memory()["VmRSS"])
            await asyncio.sleep(every)


@asynccontextmanager
async def bot_process(env: dict[str, str], scratch: Path, name: str) -> AsyncIterator[BotProcess]:
    """Run ``python -m bot serve`` with ``env`` (OPSFLOW_* settings) until the block exits."""
    port = free_port()
    log = scratch / f"{name}.log"
    child_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OPSFLOW_")},
        "PYTHONPATH": str(ROOT),
        "OPSFLOW_HTTP__HOST": "127.0.0.1",
        "OPSFLOW_HTTP__PORT": str(port),
        **env,
    }
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "serve", cwd=scratch, env=child_env, stderr=stderr
        )  # cwd: no stray .env is read
        bot = BotProcess(f"http://127.0.0.1:{port}", process.pid, log)
        try:
            await _wait_ready(bot, process)
            sampler = asyncio.create_task(bot.sample())
            try:
                yield bot
            finally:
                sampler.cancel()
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), 60)
                except TimeoutError:
                    process.kill()
                    await process.wait()


async def _wait_ready(bot: BotProcess, process: asyncio.subprocess.Process, within: float = 120.0) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                break
            try:
                async with http.get(f"{bot.url}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    tail = bot.log.read_text(errors="replace")[-3000:]
    raise SystemExit(f"the bot did not start (exit {process.returncode}):\n{tail}")
