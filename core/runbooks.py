"""How runbooks are written, as pure text functions: which section says what, and what a step is.

Shared by the knowledge-base extractor (retrieval) and the extractive planner (generation),
which must read a runbook the same way. No I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_ROLE_OF_SECTION = {
    "description": ("meaning", "description", "summary", "overview", "symptom", "problem", "what", "alert"),
    "note": ("impact", "note", "prevention", "escalat", "reference", "background", "additional"),
    "mitigation": (
        "diagnos", "troubleshoot", "investigat", "debug", "check", "verif", "mitigat", "resolution",
        "remediat", "fix", "recover", "solution", "procedure", "steps", "action", "workaround",
    ),
    "typical_cases": ("cause", "case", "example", "scenario", "reason"),
}  # fmt: skip

_BULLET = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`])")
_QUOTE = re.compile(r"^\s*(?:>\s?)+")


def section_role(heading_path: Sequence[str]) -> str:
    """Which of an incident node's fields a section feeds, from its top heading:
    ``description``, ``note``, ``mitigation`` or ``typical_cases``."""
    top = heading_path[0].lower() if heading_path else ""
    for role, stems in _ROLE_OF_SECTION.items():
        if any(stem in top for stem in stems):
            return role
    return "note" if top else "description"


def steps_of(text: str, min_words: int = 3) -> list[str]:
    """Bullets and sentences of a section in order; code blocks, command lines and fragments left out."""
    steps: list[str] = []
    in_code = False
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            steps.extend(s.strip() for s in _SENTENCE_END.split(" ".join(paragraph)) if len(s.split()) >= min_words)
            paragraph.clear()

    for line in text.splitlines():
        line = _QUOTE.sub("", line)  # a blockquote's text is still text
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            flush()
            in_code = not in_code
        elif in_code or stripped.startswith(("$ ", "#", "|")):
            continue
        elif not stripped:
            flush()
        elif _BULLET.match(line):
            flush()
            paragraph.append(_BULLET.sub("", line).strip())
        else:
            paragraph.append(stripped)
    flush()
    return [s[:300] for s in steps]
