"""Ingest throughput on ../shared/bench/corpus: first ingest vs unchanged re-ingest, peak RSS.

Each run is a separate ``opsflow ingest --json`` process on a fresh data directory (the ONNX
export of the embedding model is done beforehand, once), timed from the outside.

    .venv/bin/python -m bench.ingest_throughput
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import SHARED_BENCH
from retrieval.embedding import OnnxEmbedder


def timed_ingest(data_dir: Path, corpus: Path) -> tuple[float, dict[str, object], float]:
    """(seconds, report, peak RSS of the child in MiB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "bot", "ingest", "--json", str(corpus)],
        env={**os.environ, "OPSFLOW_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if out.returncode not in (0, 3):
        raise SystemExit(out.stderr)
    peak = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    return seconds, json.loads(out.stdout), peak


def main() -> None:
    corpus = SHARED_BENCH / "corpus"
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = Path(scratch)
        asyncio.run(OnnxEmbedder(data_dir / "models").embed(["export once"]))
        first, report, rss = timed_ingest(data_dir, corpus)
        again, report_again, _ = timed_ingest(data_dir, corpus)
    chunks = report["chunks"]
    print(
        f"first ingest: {len(report['added'])} documents, {chunks} chunks in {first:.1f}s "
        f"= {chunks / first:.1f} chunks/s (process wall time, model load included); peak RSS {rss:.0f} MiB"
    )
    print(
        f"unchanged re-ingest: {report_again['unchanged']} documents skipped in {again:.2f}s "
        f"= {first / again:.0f}x faster"
    )


if __name__ == "__main__":
    main()
