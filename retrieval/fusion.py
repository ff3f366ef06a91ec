"""Reciprocal-rank fusion: one pure function, the same for every backend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def reciprocal_rank_fusion(
    rankings: Mapping[str, Sequence[str]], k: int = 60, weights: Mapping[str, float] | None = None
) -> list[tuple[str, float, dict[str, int]]]:
    """Fuse named rankings of ids (best first) into ``(id, score, {ranking: 1-based rank})``, best first.

    score(id) = Σ weight / (k + rank). Ties keep the order in which ids were first seen, so the
    result is deterministic.
    """
    scores: dict[str, float] = {}
    ranks: dict[str, dict[str, int]] = {}
    for name, ids in rankings.items():
        weight = 1.0 if weights is None else weights.get(name, 1.0)
        for rank, item in enumerate(dict.fromkeys(ids), start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
            ranks.setdefault(item, {})[name] = rank
    ordered = sorted(scores, key=lambda item: -scores[item])
    return [(item, scores[item], ranks[item]) for item in ordered]
