"""When the evidence is too weak to plan from: the leading runbook's own dense score against the bar."""

from __future__ import annotations

from bot.service import abstention
from core.settings import PlannerSettings
from core.types import Chunk, Passage, Retrieval


def passage(doc: str, ordinal: int, ranks: dict[str, int], dense: float | None = None) -> Passage:
    chunk = Chunk(chunk_id=f"{doc}#{ordinal}", doc_id=doc, ordinal=ordinal, title=doc, heading_path=(), text="t")
    return Passage(chunk=chunk, score=1.0, ranks=ranks, raw_scores={} if dense is None else {"dense": dense})


def test_a_weak_lead_abstains_though_its_runbook_context_is_numbered_from_one() -> None:
    weak = Retrieval(
        query="q",
        passages=(passage("a.md", 4, {"runbook": 1, "dense": 5}, 0.46), passage("a.md", 0, {"context": 1})),
    )
    reason = abstention(weak, PlannerSettings(abstain_below=0.49))
    assert reason == "the nearest runbook, a.md, scores 0.46 (answers need 0.49)"


def test_two_rankings_agreeing_on_the_lead_lower_the_bar() -> None:
    agreed = Retrieval(query="q", passages=(passage("a.md", 4, {"runbook": 1, "bm25": 1, "dense": 5}, 0.46),))
    assert abstention(agreed, PlannerSettings(abstain_below=0.49)) is None
