"""The usearch HNSW index: near-exact answers, saved on flush, brought in line with SQLite when opened."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from retrieval.embedded import EmbeddedChunkIndex
from retrieval.vectors import VectorIndex
from tests.contract.chunk_index import make_doc, unit


def _unit_rows(n: int, dim: int = 64, seed: int = 3) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_searches_find_what_an_exact_scan_finds(tmp_path: Path) -> None:
    vectors = _unit_rows(3000)
    index = VectorIndex(tmp_path / "v")
    index.replace([], range(3000), vectors)
    queries = _unit_rows(20, seed=4)
    recall = []
    for q in queries:
        exact = set(np.argsort(-(vectors @ q))[:10].tolist())
        found = index.search(q, 10)
        recall.append(len(exact & {k for k, _ in found}) / 10)
        assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)
        assert all(abs(s - float(vectors[k] @ q)) < 1e-4 for k, s in found)  # scores are cosines
    assert np.mean(recall) >= 0.95


def test_removed_keys_are_never_found_and_what_was_flushed_is_restored(tmp_path: Path) -> None:
    vectors = _unit_rows(50)
    index = VectorIndex(tmp_path / "v")
    index.replace([], range(50), vectors)
    index.replace(range(10), [], np.zeros((0, 0), dtype=np.float32))
    index.flush()
    again = VectorIndex(tmp_path / "v")
    assert again.keys() == set(range(10, 50))
    assert again.search(vectors[3], 5)[0][0] != 3
    assert again.search(vectors[30], 1)[0][0] == 30


def test_an_empty_index_finds_nothing_and_saves_nothing(tmp_path: Path) -> None:
    index = VectorIndex(tmp_path / "v")
    assert index.search(_unit_rows(1)[0], 5) == []
    index.flush()
    assert not (tmp_path / "v").exists()


async def _put(index: EmbeddedChunkIndex, doc_id: str, seeds: list[int]) -> None:
    doc, chunks, incidents = make_doc(doc_id, [f"text {s}" for s in seeds])
    await index.replace_document(doc, chunks, np.stack([unit(s) for s in seeds]), incidents)


async def test_a_lost_or_stale_vector_file_is_brought_in_line_with_sqlite(tmp_path: Path) -> None:
    index = EmbeddedChunkIndex(tmp_path / "index.sqlite")
    await _put(index, "a.md", [1, 2])
    await _put(index, "b.md", [3])
    await index.aclose()
    shutil.copy(tmp_path / "index.vectors", tmp_path / "old.vectors")  # holds a.md's vectors

    index = EmbeddedChunkIndex(tmp_path / "index.sqlite")
    await index.remove_documents(["a.md"])
    await _put(index, "c.md", [4])
    await index.aclose()
    shutil.copy(tmp_path / "old.vectors", tmp_path / "index.vectors")  # as if the last save never happened

    index = EmbeddedChunkIndex(tmp_path / "index.sqlite")
    assert [c for c, _ in await index.dense(unit(1), 5)] != ["a.md#0"]
    assert {c for c, _ in await index.dense(unit(4), 5)} == {"b.md#0", "c.md#0"}
    await index.aclose()
    (tmp_path / "index.vectors").unlink()

    index = EmbeddedChunkIndex(tmp_path / "index.sqlite")
    assert (await index.dense(unit(3), 1))[0][0] == "b.md#0"
    await index.aclose()


def test_scores_of_given_keys_are_exact_cosines_and_unknown_keys_are_left_out(tmp_path: Path) -> None:
    vectors = _unit_rows(20)
    index = VectorIndex(tmp_path / "v")
    index.replace([], range(20), vectors)
    scored = index.score(vectors[5], [7, 5, 99])
    assert [k for k, _ in scored] == [7, 5]
    assert scored[1][1] == pytest.approx(1.0, abs=1e-5)
    assert scored[0][1] == pytest.approx(float(vectors[7] @ vectors[5]), abs=1e-5)
