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


def doc_of(chunk_id: str) -> str:
    """The document a chunk id belongs to (chunk ids are ``<doc_id>#<ordinal>``)."""
    return chunk_id.rsplit("#", 1)[0]


def score_documents(
    chunk_hits: Mapping[str, Sequence[tuple[str, float]]],
    doc_hits: Mapping[str, Sequence[tuple[str, float]]],
    *,
    weights: Mapping[str, float],
    cosine: frozenset[str] = frozenset({"dense"}),
    cosine_floor: float = 0.4,
    more: float = 0.1,
) -> list[tuple[str, float]]:
    """Documents best first, as ``(doc_id, score)``: a weighted sum of each ranking's normalised evidence.

    ``chunk_hits`` and ``doc_hits`` map a ranking's name to its ``(chunk_id | doc_id, score)`` hits.
    A cosine ranking (named in ``cosine``) gives a document ``(best cosine − floor) / (1 − floor)``,
    at least 0, so its values mean the same for every query. Any other ranking's scores (BM25) are
    divided by the ranking's best, and in a chunk ranking a document's passages add up: its best,
    plus ``more`` times its next two. Ties keep first-seen order.
    """
    scores: dict[str, float] = {}
    for name, hits in (*chunk_hits.items(), *doc_hits.items()):
        per_doc: dict[str, list[float]] = {}
        for key, score in hits:
            per_doc.setdefault(doc_of(key) if name in chunk_hits else key, []).append(score)
        top = max((max(v) for v in per_doc.values()), default=0.0)
        for doc_id, values in per_doc.items():
            values.sort(reverse=True)
            if name in cosine:
                value = max(0.0, values[0] - cosine_floor) / (1 - cosine_floor)
            else:
                value = (values[0] + more * sum(values[1:3])) / top if top > 0 else 0.0
            scores[doc_id] = scores.get(doc_id, 0.0) + weights.get(name, 1.0) * value
    ordered = sorted(scores, key=lambda d: -scores[d])
    return [(d, scores[d]) for d in ordered]
