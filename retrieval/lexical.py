"""Text preparation shared by every BM25 backend: identifiers split, stop words dropped, stems."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from core.types import IncidentNode, normalise_name

# Case changes, and where letters meet digits: CollectorHigh403ForbiddenResponseRate names "403".
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[A-Za-z])(?=\d)")
_IDENTIFIER = re.compile(r"\b[A-Za-z][a-z0-9]*[A-Z][A-Za-z0-9]*\b")
_WORD = re.compile(r"[A-Za-z0-9]+")

STOP_WORDS = frozenset(
    (
        "a an the and or of to in on for with by at from as is are be been being it its this that these "
        "those if then else than so such via into onto over under out up any all each every some no not only "
        "also just your you we our they them their can could should would may might must will shall do does "
        "did done have has had i me my how what when where who why which there here get got am please help"
    ).split()
)


_NOT = re.compile(r"\bNot (\w+)")


def expand_identifiers(text: str) -> str:
    """Append the parts of CamelCase identifiers, so 'KubeAPIDown' also matches 'kube api down', and a
    'Not' joined to the state it negates ('KubeNodeNotReady' → … 'NotReady'): 'not' is a stop word, and
    without it the status NotReady would match whatever says 'ready'."""
    parts = [_CAMEL.sub(" ", m.group(0)) for m in _IDENTIFIER.finditer(text)]
    parts += [f"Not{state}" for part in parts for state in _NOT.findall(part)]
    return text if not parts else text + "\n" + " ".join(parts)


def query_terms(query: str) -> list[str]:
    """Distinct lower-cased search terms of a query, identifiers split, stop words dropped."""
    words = (w.lower() for w in _WORD.findall(expand_identifiers(query)))
    return list(dict.fromkeys(w for w in words if w not in STOP_WORDS and (len(w) > 1 or w.isdigit())))


def _stemmer() -> Any:
    global _STEMMER
    if _STEMMER is None:
        import Stemmer

        _STEMMER = Stemmer.Stemmer("english")
    return _STEMMER


_STEMMER: Any = None


def index_terms(text: str) -> list[str]:
    """The stemmed BM25 terms of a text, in order, repeats kept (identifiers also split)."""
    words = [w.lower() for w in _WORD.findall(expand_identifiers(text))]
    return list(_stemmer().stemWords([w for w in words if w not in STOP_WORDS and (len(w) > 1 or w.isdigit())]))


def runbook_names(doc_id: str, title: str, incidents: Sequence[IncidentNode]) -> tuple[str, ...]:
    """What a document is called: its title, its file name, and its incidents' names and aliases.

    Distinct by normalised form (``KubePodCrashLooping`` and ``Kube Pod Crash Looping`` are one).
    """
    stem = doc_id.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    names = (title, stem, *(n for node in incidents for n in (node.name, *node.aliases)))
    unique: dict[str, str] = {}
    for name in names:
        unique.setdefault(normalise_name(name), name)
    return tuple(name for key, name in unique.items() if key)


def runbook_about(incidents: Sequence[IncidentNode]) -> str:
    """What a document's incidents are, in their own words: their descriptions, each once."""
    return "\n".join(dict.fromkeys(n.description for n in incidents if n.description))
