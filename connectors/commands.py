"""Allowlisted commands: argv only, never a shell, a fixed environment, a deadline and an output cap.

Because there is no shell, ``;``, ``|``, ``$(…)`` and backticks in an argument are just characters
handed to the program. The process runs in its own session so that a deadline or the output cap
stops it together with any children it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
from collections.abc import Mapping, Sequence

from connectors.redaction import condensed
from core.types import ToolResult

READ_SIZE = 65_536


async def run_command(argv: Sequence[str], *, env: Mapping[str, str], timeout_s: float, cap: int) -> ToolResult:
    """Run ``argv`` (stdout and stderr together); exit status 0 is ``ok``, anything else ``error``."""
    shown = " ".join(argv)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
        )
    except FileNotFoundError:
        return ToolResult(status="error", summary=f"{argv[0]}: not found on the command PATH")
    except OSError as exc:  # not executable, a directory, too many processes…
        return ToolResult(status="error", summary=f"{argv[0]}: {exc.strerror or exc}")
    output = bytearray()
    capped = False
    try:
        async with asyncio.timeout(timeout_s):
            capped = await _collect(proc, output, cap)
            if capped:
                _stop(proc)
            code = await proc.wait()
    except TimeoutError:
        _stop(proc)
        await proc.wait()
        text = f"{shown}: stopped after {timeout_s:g} s\n{output.decode(errors='replace')}"
        return ToolResult(status="timeout", summary=condensed(text))
    finally:
        if proc.returncode is None:  # cancelled (the run's deadline): leave nothing running
            _stop(proc)
    text = output[:cap].decode(errors="replace")
    data: dict[str, object] = {"exit_code": None if capped else code, "bytes": min(len(output), cap), "capped": capped}
    if code == 0 and (number := _number(text)) is not None:
        data["values"] = [number]  # a command that prints one number gives it to decision rules
    if capped:
        text += f"\n[output capped at {cap} bytes; the command was stopped]"
    elif code != 0:
        text += f"\n[exit status {code}]"
    status = "ok" if capped or code == 0 else "error"
    return ToolResult(status=status, summary=condensed(text.strip() or "(no output)"), data=data)


async def _collect(proc: asyncio.subprocess.Process, output: bytearray, cap: int) -> bool:
    """Read the output into ``output`` until EOF (False) or past ``cap`` bytes (True)."""
    assert proc.stdout is not None
    while chunk := await proc.stdout.read(READ_SIZE):
        output += chunk
        if len(output) > cap:
            return True
    return False


def _number(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _stop(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):  # it may have exited on its own meanwhile
        os.killpg(proc.pid, signal.SIGKILL)
