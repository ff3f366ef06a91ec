"""Incident-aware nodes without an LLM: the structural extractor, and merge / refine / relate.

The structural extractor reads any runbook in which ``core.runbooks`` finds a procedure: the
document's title names the incident — or, in a file documenting many alerts, each alert's heading
names one incident of its own — and each chunk's candidates fill FlowXpert's five fields (steps →
Mitigation Steps, description → Failure Description, cases → Typical Cases, notes → Additional
Note). Merging and refining are pure functions, used for the LLM extractor's candidates too.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np

from core.runbooks import alert_heading, read_section, section_kind, why_no_procedure
from core.types import Chunk, IncidentNode, Relation, SourceDocument, normalise_name

_MENTION = re.compile(r"\b[A-Za-z][a-z0-9]*(?:[A-Z][A-Za-z0-9]*)+\b")
_COMPONENT_WORDS = (
    "etcd", "apiserver", "kubelet", "scheduler", "controller", "dns", "coredns", "postgres", "postgresql",
    "prometheus", "alertmanager", "thanos", "node", "pod", "ingress", "kafka", "redis", "rabbitmq", "tls",
    "certificate", "disk", "cpu", "memory", "network", "storage", "registry", "ceph", "replication",
)  # fmt: skip

MAX_STEPS = 40
MAX_TEXT = 1500


def is_identifier(name: str) -> bool:
    """True for alert-style names (one token) such as ``KubeAPIDown``, ``etcd_member_down``, ``Watchdog``."""
    return bool(name) and not any(ch.isspace() for ch in name)


def aliases_of(doc: SourceDocument) -> tuple[str, ...]:
    """Alert-style names of a document: its title and its file name when they are identifiers."""
    stem = doc.doc_id.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    names = [n for n in (doc.title, stem) if is_identifier(n)]
    return tuple(dict.fromkeys(names))


@lru_cache(maxsize=256)
def no_procedure(doc: SourceDocument) -> str | None:
    """Why no step was found in any section of ``doc`` (what was found instead), or None if one was."""
    return why_no_procedure([(s.heading_path, s.text) for s in doc.sections])


@lru_cache(maxsize=256)
def documents_many_alerts(doc: SourceDocument) -> bool:
    """A file whose headings name two alerts or more (kubernetes-mixin style, many teams' runbook.md)."""
    return len({a for s in doc.sections if (a := alert_heading(s.heading_path))}) >= 2


def components_of(doc_id: str, name: str) -> tuple[str, ...]:
    """Component tags from the document's folder and from well-known words in the incident name."""
    folders = doc_id.split("/")[:-1]
    tags = []
    if folders:
        tags.append(re.sub(r"^(cluster|openshift)-|-operator$", "", folders[-1]).lower())
    words = set(normalise_name(name).split())
    tags.extend(w for w in _COMPONENT_WORDS if w in words)
    return tuple(dict.fromkeys(tags))


class StructuralExtractor:
    """Fills the five fields from the runbook's candidates; emits nothing for documents without a procedure."""

    async def extract(self, doc: SourceDocument, chunk: Chunk) -> list[IncidentNode]:
        if no_procedure(doc):
            return []
        alert = alert_heading(chunk.heading_path)
        if alert is None and documents_many_alerts(doc):
            return []  # the file's preamble or links: no one alert's
        aliases = (alert,) if alert else aliases_of(doc)
        name = aliases[0] if aliases else doc.title
        found = read_section(chunk.text, chunk.heading_path)
        cases = section_kind(chunk.heading_path) == "cases"
        return [
            IncidentNode(
                name=name,
                aliases=aliases,
                components=components_of(doc.doc_id, name),
                domain=doc.doc_id.split("/", 1)[0] if "/" in doc.doc_id else "",
                chunk_ids=(chunk.chunk_id,),
                doc_ids=(doc.doc_id,),
                mitigation=tuple(c.text for c in found if c.is_step),
                description=" ".join(c.text for c in found if c.role == "description" and not cases)[:MAX_TEXT],
                typical_cases=tuple(c.text for c in found if c.role == "description" and cases),
                note=" ".join(c.text for c in found if c.role == "note")[:MAX_TEXT],
            )
        ]


def group_candidates(candidates: Sequence[IncidentNode]) -> list[list[IncidentNode]]:
    """Candidates that share a normalised name or alias, grouped (union-find), in first-seen order."""
    parent = list(range(len(candidates)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, cand in enumerate(candidates):
        for key in cand.lookup_keys():
            if key in owner:
                parent[find(i)] = find(owner[key])
            else:
                owner[key] = i
    groups: dict[int, list[IncidentNode]] = {}
    for i, cand in enumerate(candidates):
        groups.setdefault(find(i), []).append(cand)
    return list(groups.values())


def names_an_alert(group: Sequence[IncidentNode]) -> bool:
    """True if any candidate of the group carries an alert identifier."""
    return any(is_identifier(n) for c in group for n in (c.name, *c.aliases))


def merge_similar(
    groups: list[list[IncidentNode]], name_vectors: np.ndarray, threshold: float = 0.93
) -> list[list[IncidentNode]]:
    """Join groups whose names embed closer than ``threshold`` (normalised vectors, one per group).

    Only for groups with descriptive names: alert identifiers such as ``etcdGRPCRequestsSlow`` and
    ``etcdGRPCReadRequestsSlow`` are different alerts even though they embed alike.
    """
    merged: list[list[IncidentNode]] = []
    kept: list[np.ndarray] = []
    for group, vector in zip(groups, name_vectors, strict=True):
        target = next((j for j, other in enumerate(kept) if float(other @ vector) >= threshold), None)
        if target is None:
            merged.append(list(group))
            kept.append(vector)
        else:
            merged[target].extend(group)
    return merged


def refine(group: Sequence[IncidentNode]) -> IncidentNode:
    """One node from a group of candidates: the best name, fields de-duplicated in document order."""
    names = Counter(c.name for c in group)
    name = max(names, key=lambda n: (is_identifier(n), names[n]))
    domains = Counter(c.domain for c in group if c.domain)
    return IncidentNode(
        name=name,
        description=_join_unique(c.description for c in group),
        mitigation=_dedupe_steps(s for c in group for s in c.mitigation)[:MAX_STEPS],
        typical_cases=_dedupe_steps(s for c in group for s in c.typical_cases)[:MAX_STEPS],
        note=_join_unique(c.note for c in group),
        aliases=tuple(a for a in dict.fromkeys(a for c in group for a in (c.name, *c.aliases)) if a != name),
        components=tuple(dict.fromkeys(t for c in group for t in c.components)),
        domain=domains.most_common(1)[0][0] if domains else "",
        chunk_ids=tuple(dict.fromkeys(i for c in group for i in c.chunk_ids)),
        doc_ids=tuple(dict.fromkeys(i for c in group for i in c.doc_ids)),
    )


def relate(nodes: Sequence[IncidentNode]) -> list[Relation]:
    """Related-incident edges: two nodes from one document, or one naming the other's alert."""
    by_key = {normalise_name(alias): n.node_id for n in nodes for alias in (n.name, *n.aliases) if is_identifier(alias)}
    edges: dict[tuple[str, str], str] = {}

    def add(a: str, b: str, reason: str) -> None:
        edges.setdefault((min(a, b), max(a, b)), reason)

    for node in nodes:
        text = " ".join((node.description, node.note, *node.mitigation, *node.typical_cases))
        for mention in set(_MENTION.findall(text)):
            other = by_key.get(normalise_name(mention))
            if other and other != node.node_id:
                add(node.node_id, other, f"mentions {mention}")
    by_doc: dict[str, list[str]] = {}
    for node in nodes:
        for doc_id in node.doc_ids:
            by_doc.setdefault(doc_id, []).append(node.node_id)
    for doc_id, ids in by_doc.items():
        for i, a in enumerate(ids):
            for b in ids[i + 1 :]:
                add(a, b, f"both in {doc_id}")
    return [Relation(src=a, dst=b, reason=reason) for (a, b), reason in sorted(edges.items())]


def _join_unique(texts: Iterable[str]) -> str:
    return " ".join(dict.fromkeys(t for t in texts if t))[:MAX_TEXT]


def _dedupe_steps(steps: Iterable[str]) -> tuple[str, ...]:
    kept: list[str] = []
    seen: list[set[str]] = []
    for step in steps:
        words = set(normalise_name(step).split())
        if words and not any(len(words & s) / len(words | s) >= 0.85 for s in seen):
            kept.append(step)
            seen.append(words)
    return tuple(kept)
