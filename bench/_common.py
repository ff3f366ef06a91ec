"""Helpers shared by the benchmark scripts (not part of the package)."""

from __future__ import annotations

import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED_BENCH = ROOT.parent / "shared" / "bench"


def summary(values: list[float]) -> dict[str, float]:
    """p50/p95/mean of a list of milliseconds."""
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(cuts[49], 2), "p95": round(cuts[94], 2), "mean": round(statistics.fmean(values), 2)}
