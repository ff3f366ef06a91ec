"""``retrieve()`` latency on a synthetic corpus of N chunks (default 10k and 100k), embedded backends.

The corpus is generated, not embedded: chunk texts draw from a Zipf vocabulary plus incident terms
and their vectors are random unit vectors, so building 100k chunks takes a minute instead of half an
hour of embedding. Queries are real text, embedded by the real model, so the measured latency is
the whole retrieve() path: query embedding, BM25, kNN, fusion, chunk and graph look-ups.

    .venv/bin/python -m bench.retrieval_latency [--sizes 10000 100000] [--queries 60]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from bench._common import summary
from bot.app import open_knowledge
from core.settings import Settings
from core.types import Chunk, IncidentNode, Section, SourceDocument

TERMS = (
    "etcd apiserver kubelet pod node disk memory cpu latency replication lag certificate dns timeout error "
    "restart crashloop oom evicted quorum leader backup wal vacuum connection pool queue consumer broker "
    "ingress 5xx probe readiness liveness scheduler pending volume pvc snapshot alert prometheus"
).split()
QUERIES = [
    "etcd cluster has no leader after a node reboot",
    "pods stuck pending because the volume cannot attach",
    "replication lag keeps growing on the standby database",
    "ingress returns 5xx during every rollout",
    "KubeletDown is firing for three nodes",
    "certificate expires in five days and renewal failed",
    "consumer lag grows while the broker looks healthy",
    "the apiserver times out for kubectl get pods",
]
CHUNKS_PER_DOC = 10
DIM = 384


def synthetic_text(rng: random.Random, vocab: list[str], weights: list[float]) -> str:
    words = rng.choices(vocab, weights, k=70) + rng.sample(TERMS, 6)
    rng.shuffle(words)
    return " ".join(words)


async def build(data_dir: Path, n: int, seed: int = 7) -> float:
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(20_000)]
    weights = [1 / (i + 1) for i in range(len(vocab))]
    centres = nprng.normal(size=(50, DIM)).astype(np.float32)
    started = time.perf_counter()
    async with open_knowledge(Settings(data_dir=data_dir, _env_file=None)) as kb:
        for d in range(n // CHUNKS_PER_DOC):
            doc_id = f"synthetic/Incident{d:06d}.md"
            texts = [synthetic_text(rng, vocab, weights) for _ in range(CHUNKS_PER_DOC)]
            doc = SourceDocument(
                doc_id=doc_id, source="/synthetic", title=f"Incident{d:06d}", kind="markdown",
                content_hash=str(d), sections=tuple(Section(heading_path=("Diagnosis",), text=t) for t in texts),
            )  # fmt: skip
            chunks = [
                Chunk(
                    chunk_id=f"{doc_id}#{i}",
                    doc_id=doc_id,
                    ordinal=i,
                    title=doc.title,
                    heading_path=("Diagnosis",),
                    text=t,
                )
                for i, t in enumerate(texts)
            ]
            vectors = centres[nprng.integers(0, 50, CHUNKS_PER_DOC)] + nprng.normal(
                scale=0.6, size=(CHUNKS_PER_DOC, DIM)
            )
            vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
            node = IncidentNode(
                name=doc.title, description=texts[0][:200], chunk_ids=(chunks[0].chunk_id,), doc_ids=(doc_id,)
            )
            await kb.index.replace_document(doc, chunks, vectors, [node])
        await kb.builder.refresh_graph()
    return time.perf_counter() - started


async def measure(data_dir: Path, queries: int) -> dict[str, dict[str, float]]:
    async with open_knowledge(Settings(data_dir=data_dir, _env_file=None)) as kb:
        await kb.retriever.retrieve("warm up")  # loads the model and the vector matrix
        embed, total = [], []
        for i in range(queries):
            query = QUERIES[i % len(QUERIES)] + f" ({i})"
            t = time.perf_counter()
            await kb.embedder.embed([query])
            embed.append((time.perf_counter() - t) * 1000)
            result = await kb.retriever.retrieve(query)
            total.append(result.took_ms)
    return {"retrieve_ms": summary(total), "query_embedding_ms": summary(embed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=60)
    args = parser.parse_args()
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as scratch:
            seconds = asyncio.run(build(Path(scratch), n))
            result = asyncio.run(measure(Path(scratch), args.queries))
        r, e = result["retrieve_ms"], result["query_embedding_ms"]
        print(
            f"{n:>7} chunks (built in {seconds:.0f}s): retrieve p50 {r['p50']} ms, p95 {r['p95']} ms; "
            f"of which query embedding p50 {e['p50']} ms"
        )


if __name__ == "__main__":
    main()
