"""``retrieve(query)``: runbooks ranked by their passages and their names, passages grouped by runbook.

Instance identifiers in the query (hosts, pods, addresses) are searched as their words only, and its
misspelt words are first corrected against the index's vocabulary.

Four rankings run concurrently: BM25 and dense over chunks, the chunks of incidents the query
names, and BM25 over each runbook's names and descriptions. Runbooks the other rankings found but
the dense top n missed then get their dense scores too. Runbooks are ranked by the weighted sum
of their normalised evidence in each, in which a runbook's passages add up
(``retrieval.fusion.score_documents``); runbooks of one alert at other levels (…Warning, …Critical)
then trade places by their BM25 alone (``tell_siblings_apart``), and the runbooks of alerts the
question names whole lead (``alerts_named``, ``named_first``); a lead found by its passages alone
gives way to a runner-up its names also found (``corroborated_lead``). A runbook's passages keep their
reciprocal-rank order. A ranking that fails is reported in ``Retrieval.degraded`` and the others still
answer; only when both chunk rankings fail is ``RetrievalUnavailable`` raised.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable
from typing import TypeVar

import numpy as np

from core.errors import BackendUnavailable, RetrievalUnavailable
from core.settings import RetrievalSettings
from core.types import Chunk, IncidentNode, NodeHit, Passage, Retrieval, normalise_name
from retrieval.fusion import doc_of, reciprocal_rank_fusion, score_documents
from retrieval.incidents import is_identifier
from retrieval.ports import ChunkIndex, Embedder, GraphStore, Hits

MAX_NAME_WORDS = 8
MIN_KEY_CHARS = 5
MAX_NODES = 8
MAX_CONTEXT = 20
PER_DOC = 3  # passages of one runbook among the top k
CHUNKS_PER_DOC = 5  # dense hits asked for each runbook found by other rankings only (a runbook has about 5 chunks)

T = TypeVar("T")
# A word with a digit and a separator names an instance (ip-10-1-2-3.ec2.internal, pod=api-7f9c4b-xk2,
# 10.0.1.5:9100): which machine, not what is wrong. Runbooks are written for every instance.
_INSTANCE = re.compile(r"(?=\S*\d)(?=\S*[-._:/=])\S+")
_NAME_PART = re.compile(r"(?<![^\W_])[^\W\d_]{3,}(?![^\W_])")
_UNIT = re.compile(r"\w+")  # a word or an identifier (KubeAPIDown, etcd_member_down), as written
_DIGITS = re.compile(r"(?<=[A-Za-z])(?=\d)")
SEVERITIES = frozenset({"info", "warning", "minor", "major", "critical", "near", "critically"})  # levels in alert names
_VERSION = re.compile(r"v?\d+(?:\.\d+){1,2}\W*")  # 4.19, v1.28.3: what changed, and runbooks name it


def without_instances(query: str) -> str:
    """``query`` with instance identifiers reduced to their words (``ip-10-1-2-3.ec2.internal`` → ``internal``,
    ``pod=api-7f9c4b-xk2`` → ``pod api``), as the alert's labels name one host, pod or address; version
    numbers stay, and a query that is nothing but identifiers stays as asked."""

    def words(found: re.Match[str]) -> str:
        word = found.group(0)
        return word if _VERSION.fullmatch(word) else " ".join(_NAME_PART.findall(word))

    return _INSTANCE.sub(words, query).strip() or query


def name_keys(query: str) -> set[str]:
    """Every word n-gram of the normalised query that could be an incident's normalised name."""
    words = normalise_name(query).split()
    grams = (" ".join(words[i : i + n]) for n in range(1, MAX_NAME_WORDS + 1) for i in range(len(words) - n + 1))
    return {g for g in grams if len(g) >= MIN_KEY_CHARS}


class Retriever:
    """Runbooks ranked by their passages (BM25, dense) and their names, with incident nodes from the graph."""

    def __init__(self, index: ChunkIndex, graph: GraphStore, embedder: Embedder, settings: RetrievalSettings) -> None:
        self._index = index
        self._graph = graph
        self._embedder = embedder
        self._settings = settings

    async def retrieve(self, query: str, k: int | None = None) -> Retrieval:
        """Top ``k`` passages (default ``top_k``) grouped by runbook, best runbook first (at most
        ``PER_DOC`` passages each), then the leading runbook's other incident chunks (rank ``context``,
        score 0), and the incidents the query names or resembles.

        A passage's ``score`` is its runbook's score; its ``ranks`` and ``raw_scores`` are its
        own in each chunk ranking plus its runbook's in ``runbook`` (the names ranking)."""
        started = time.perf_counter()
        top_k = k or self._settings.top_k
        n = self._settings.candidates
        degraded: list[str] = []
        general = without_instances(query)
        # Misspelt words would miss in BM25 and skew the embedding; every ranking searches the correction.
        # The query is embedded meanwhile, and again only if a word was corrected.
        async with asyncio.TaskGroup() as tg:
            spelled = tg.create_task(_guard("spelling", self._index.spelling(general), degraded))
            as_asked = tg.create_task(_guard("semantic search", self._embed(general), degraded))
        searched = spelled.result() or general
        vector = as_asked.result() if searched == general else None
        async with asyncio.TaskGroup() as tg:
            bm25 = tg.create_task(_guard("keyword search", self._index.lexical(searched, n), degraded))
            dense = tg.create_task(_guard("semantic search", self._dense(searched, vector, n), degraded))
            names = tg.create_task(_guard("runbook names", self._index.runbooks(searched, n), degraded))
            named = tg.create_task(_guard("incident graph", self._graph.named(name_keys(searched)), degraded))
        if bm25.result() is None and dense.result() is None:
            raise RetrievalUnavailable("; ".join(degraded), backend="chunk index")
        named_nodes = named.result() or []
        named_chunks = [c for node in _most_specific_first(named_nodes) for c in node.chunk_ids][:n]
        runbook = names.result() or []
        vector, dense_hits = dense.result() or (None, [])
        if vector is not None:
            # A runbook that its keywords or names rank high is weighed on meaning too, though none of
            # its chunks made the dense top n: otherwise it gets nothing from the most weighted ranking.
            keywords = list(dict.fromkeys(doc_of(c) for c, _ in bm25.result() or []))
            found = {*keywords[:top_k], *(d for d, _ in runbook[:top_k]), *map(doc_of, named_chunks)}
            others = found - {doc_of(c) for c, _ in dense_hits}
            if others:
                within = self._index.dense(vector, CHUNKS_PER_DOC * len(others), within=others)
                dense_hits = dense_hits + (await _guard("semantic search", within, degraded) or [])
        hits = {"bm25": bm25.result() or [], "dense": dense_hits}
        rankings = {name: [c for c, _ in found] for name, found in hits.items()}
        rankings["named"] = named_chunks
        cfg = self._settings
        weights = {
            "bm25": cfg.bm25_weight, "dense": cfg.dense_weight, "named": cfg.named_weight, "runbook": cfg.runbook_weight
        }  # fmt: skip
        chunk_order = reciprocal_rank_fusion(rankings, k=cfg.rrf_k, weights=weights)
        named_docs = [(doc_of(c), 1.0) for c in rankings["named"]]
        docs = score_documents(hits, {"runbook": runbook, "named": named_docs}, weights=weights)
        docs = tell_siblings_apart(docs, dict(score_documents({"bm25": hits["bm25"]}, {}, weights={})))
        docs = named_first(docs, {d for node in alerts_named(named_nodes, searched) for d in node.doc_ids})
        docs = corroborated_lead(docs, {d for d, _ in runbook} | {d for d, _ in named_docs})
        chosen = await self._passages(docs, [c for c, _, _ in chunk_order], top_k)
        ranks = {cid: r for cid, _, r in chunk_order}
        raw = {name: dict(found) for name, found in (*hits.items(), ("runbook", runbook))}
        doc_rank = {d: i for i, (d, _) in enumerate(runbook, 1)}
        passages = tuple(
            Passage(
                chunk=chunk,
                score=round(score, 6),
                ranks=ranks.get(chunk.chunk_id, {})
                | ({"runbook": doc_rank[chunk.doc_id]} if chunk.doc_id in doc_rank else {}),
                raw_scores={
                    name: values[key]
                    for name, values in raw.items()
                    if (key := chunk.doc_id if name == "runbook" else chunk.chunk_id) in values
                },
            )
            for chunk, score in chosen
        )
        nodes = await _guard("incident graph", self._nodes(named_nodes, passages), degraded) or []
        passages += await self._lead_context(passages, nodes)
        return Retrieval(
            query=query,
            passages=passages,
            nodes=tuple(nodes),
            degraded=tuple(dict.fromkeys(degraded)),
            took_ms=(time.perf_counter() - started) * 1000,
        )

    async def _passages(
        self, docs: list[tuple[str, float]], chunk_order: list[str], top_k: int
    ) -> list[tuple[Chunk, float]]:
        """Up to ``top_k`` (chunk, runbook score): the best runbooks' best chunks, ``PER_DOC`` each.

        A runbook found only by its names contributes its first chunks."""
        by_doc: dict[str, list[str]] = {}
        for chunk_id in chunk_order:
            by_doc.setdefault(doc_of(chunk_id), []).append(chunk_id)
        wanted: list[tuple[str, float]] = []
        for doc_id, score in docs:
            ids = by_doc.get(doc_id) or [f"{doc_id}#{i}" for i in range(PER_DOC)]
            wanted.extend((c, score) for c in ids[:PER_DOC])
            if len(wanted) >= top_k + PER_DOC:  # a little spare for chunks that vanished meanwhile
                break
        found = await self._index.chunks([c for c, _ in wanted])
        return [(found[c], score) for c, score in wanted if c in found][:top_k]

    async def _lead_context(self, passages: tuple[Passage, ...], nodes: list[NodeHit]) -> tuple[Passage, ...]:
        """The rest of the leading document's incident chunks, so the planner sees its whole runbook."""
        if not passages:
            return ()
        lead = passages[0].chunk.doc_id
        node = next((h.node for h in nodes if lead in h.node.doc_ids), None)
        have = {p.chunk.chunk_id for p in passages}
        wanted = [c for c in (node.chunk_ids if node else ()) if c.startswith(lead + "#") and c not in have]
        found = await self._index.chunks(wanted[:MAX_CONTEXT])
        return tuple(
            Passage(chunk=found[c], score=0.0, ranks={"context": i}) for i, c in enumerate(wanted, 1) if c in found
        )

    async def _embed(self, query: str) -> np.ndarray:
        return (await self._embedder.embed([query]))[0]

    async def _dense(self, query: str, vector: np.ndarray | None, n: int) -> tuple[np.ndarray, Hits]:
        """The query's vector (``vector``, else embedded now) and its ``n`` nearest chunks."""
        if vector is None:
            vector = await self._embed(query)
        return vector, await self._index.dense(vector, n)

    async def _nodes(self, named: list[IncidentNode], passages: tuple[Passage, ...]) -> list[NodeHit]:
        """Named nodes first, then nodes of the top passages (scored by their best passage), then neighbours."""
        hits: dict[str, NodeHit] = {n.node_id: NodeHit(node=n, score=1.0, via="named") for n in named}
        top = max((p.score for p in passages), default=0.0) or 1.0
        best = {p.chunk.chunk_id: p.score / top for p in passages}
        for node in await self._graph.for_chunks(list(best)):
            if node.node_id not in hits:
                score = max(best.get(c, 0.0) for c in node.chunk_ids)
                hits[node.node_id] = NodeHit(node=node, score=round(score, 4), via="chunk")
        anchors = [h.node.node_id for h in sorted(hits.values(), key=lambda h: -h.score)[:2]]
        for node in await self._graph.neighbours(anchors):
            hits.setdefault(node.node_id, NodeHit(node=node, score=0.25, via="neighbour"))
        return sorted(hits.values(), key=lambda h: -h.score)[:MAX_NODES]


def alerts_named(nodes: list[IncidentNode], query: str) -> list[IncidentNode]:
    """Those of ``nodes`` that ``query`` names by an alert name of theirs, in any case: written as one
    identifier ('KubeAPIDown', 'etcd_members_down', 'AlertmanagerConfig'), or spaced out when that
    takes three words or more ('kube api down'): two words ('alertmanager config') are as likely the
    question's own. An identifier of the query is named whole: 'PrometheusRuleFailures' does not name
    'PrometheusRule'. One-word names ('Watchdog', a file called 'diagnosis') never count."""
    units = [u for u in map(normalise_name, _UNIT.findall(query)) if u]
    written = {u for u in units if len(u.split()) >= 2}  # identifiers as written
    spaced = {" ".join(units[i : i + n]) for n in range(2, MAX_NAME_WORDS + 1) for i in range(len(units) - n + 1)}

    def names_it(node: IncidentNode) -> bool:
        alerts = {normalise_name(n) for n in (node.name, *node.aliases) if is_identifier(n)}
        return bool(alerts & written or {k for k in alerts if len(k.split()) >= 3} & spaced)

    return [node for node in nodes if names_it(node)]


def named_first(docs: list[tuple[str, float]], named: set[str]) -> list[tuple[str, float]]:
    """``docs`` (best first) with the runbooks of the alerts the question names ahead of the rest, in
    their order: whoever names an alert asks about it. Their scores rise by the leader's to stay ordered."""
    top = docs[0][1] if docs else 0.0
    return [(d, s + top) for d, s in docs if d in named] + [(d, s) for d, s in docs if d not in named]


def corroborated_lead(docs: list[tuple[str, float]], corroborated: set[str]) -> list[tuple[str, float]]:
    """``docs`` (best first) with a lead that is not ``corroborated`` (found by the names ranking or
    named by the question) and a runner-up that is trading places, each place keeping its score.

    Such a lead was found by a passage alone: no word of the question is in its names or its incidents'
    descriptions. That is how a long page of shared procedures (a diagnosis helper that runbooks link
    to, with example hosts and outputs) leads for many questions; the runbook it is next to is about one."""
    if len(docs) > 1 and docs[0][0] not in corroborated and docs[1][0] in corroborated:
        return [(docs[1][0], docs[0][1]), (docs[0][0], docs[1][1]), *docs[2:]]
    return docs


def sibling_key(doc_id: str) -> str:
    """What a runbook is about without its severity and threshold: ``…/GuestVCPUQueueHighWarning.md`` and
    ``…/GuestVCPUQueueHighCritical.md`` (one alert at two levels) share ``…/guest vcpu queue high``."""
    folder, _, stem = doc_id.rpartition("/")
    words = normalise_name(_DIGITS.sub(" ", stem.rsplit(".", 1)[0])).split()
    return f"{folder}/{' '.join(w for w in words if w not in SEVERITIES and not w.isdigit())}"


def tell_siblings_apart(docs: list[tuple[str, float]], lexical: dict[str, float]) -> list[tuple[str, float]]:
    """``docs`` (best first) with each set of siblings (``sibling_key``) reordered among the places they hold,
    by ``lexical`` evidence (a runbook's BM25 over its passages); ties keep their order.

    Siblings read alike, so meaning and names rank them by noise: what tells them apart is the words
    the question shares with one only (its threshold, 'critical'). Each place keeps its score."""
    places: dict[str, list[int]] = {}
    for i, (doc_id, _) in enumerate(docs):
        places.setdefault(sibling_key(doc_id), []).append(i)
    ordered = list(docs)
    for held in places.values():
        if len(held) > 1:
            best_first = sorted(held, key=lambda i: -lexical.get(docs[i][0], 0.0))  # stable: ties keep order
            for place, i in zip(held, best_first, strict=True):
                ordered[place] = (docs[i][0], docs[place][1])
    return ordered


def _most_specific_first(nodes: list[IncidentNode]) -> list[IncidentNode]:
    return sorted(nodes, key=lambda n: -max(len(k) for k in n.lookup_keys()))


async def _guard(what: str, work: Awaitable[T], degraded: list[str]) -> T | None:
    """Run one part of retrieval; a backend that is down becomes a note instead of an error."""
    try:
        return await work
    except BackendUnavailable as exc:
        degraded.append(f"{what} unavailable ({exc})")
        return None
