"""The embedded vector index: HNSW by usearch, keyed by the chunks' SQLite rowids, in a file beside the database.

SQLite keeps every vector (the source of truth); this index only makes the nearest-neighbour search
sub-linear: at 100k chunks an exact numpy scan reads 150 MB per query (about 10 ms here), a usearch
HNSW search about 0.5 ms at 0.997 recall@10 (../shared/notes/libraries.md). Its file (160 MB at 100k
chunks) is saved on ``flush`` only, when an ingest or the process ends: other processes read it only
when they open it. After a crash before the save, the owner brings it in line with SQLite when it is
opened (``keys`` against the stored rowids).

Method: Malkov & Yashunin, "Efficient and robust approximate nearest neighbor search using
Hierarchical Navigable Small World graphs" (2016), as implemented by usearch.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Collection
from pathlib import Path

import numpy as np
from usearch.index import Index

# Wider candidate lists than usearch's defaults (64): recall@10 0.994 instead of 0.946 on uniformly
# random 64-d vectors, the hard case; a search stays under a millisecond.
_GRAPH = {"connectivity": 16, "expansion_add": 128, "expansion_search": 128}


class VectorIndex:
    """Inner-product HNSW over L2-normalised float32 vectors; thread-safe, blocking calls."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._index: Index | None = None
        if path.exists():
            self._index = Index.restore(str(path))
            self._index.expansion_search = _GRAPH["expansion_search"]  # a search setting: not saved
        self._dirty = False  # written since the last save

    def keys(self) -> set[int]:
        """Every key held."""
        with self._lock:
            return set() if self._index is None else {int(k) for k in np.asarray(self._index.keys)}

    def replace(self, removed: Collection[int], keys: Collection[int], vectors: np.ndarray) -> None:
        """Drop ``removed`` and add ``keys`` with their ``vectors`` (shape ``(len(keys), dim)``)."""
        if len(keys) != len(vectors):
            raise ValueError(f"{len(keys)} keys but {len(vectors)} vectors")
        with self._lock:
            if self._index is None and len(keys):
                self._index = Index(ndim=vectors.shape[1], metric="ip", dtype="f32", **_GRAPH)
            if self._index is None:
                return
            for key in removed:
                self._index.remove(int(key))
            if len(keys):
                self._index.add(np.fromiter(keys, dtype=np.uint64), np.ascontiguousarray(vectors, dtype=np.float32))
            self._dirty = True

    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """At most ``k`` (key, cosine) pairs, best first (approximate: HNSW)."""
        with self._lock:
            if self._index is None or len(self._index) == 0 or k <= 0:
                return []
            found = self._index.search(np.asarray(vector, dtype=np.float32), min(k, len(self._index)))
        # usearch's inner-product distance is 1 - dot.
        return [(int(key), 1.0 - float(d)) for key, d in zip(found.keys, found.distances, strict=True)]

    def score(self, vector: np.ndarray, keys: Collection[int]) -> list[tuple[int, float]]:
        """(key, exact cosine) of each of ``keys`` held, from the stored vectors, in ``keys`` order."""
        with self._lock:
            if self._index is None or not keys:
                return []
            stored = self._index.get(np.fromiter(keys, dtype=np.uint64))
        held = [(key, v) for key, v in zip(keys, stored, strict=True) if v is not None]
        if not held:
            return []
        scores = np.vstack([v for _, v in held]) @ np.asarray(vector, dtype=np.float32)
        return [(key, float(s)) for (key, _), s in zip(held, scores, strict=True)]

    def flush(self) -> None:
        """Save what was written since the last save."""
        with self._lock:
            if self._dirty and self._index is not None:
                partial = self._path.with_suffix(".partial")
                self._index.save(str(partial))
                os.replace(partial, self._path)  # readers of the file never see half of it
                self._dirty = False  # written since the last save
