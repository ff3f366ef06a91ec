"""FlowXpert's Scorer: a chat model rates a workflow for its question and context (0–1, with reasons).

Used to pick the best of several planner candidates, and as the reward of the planner's RL.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, ValidationError

from core.types import Retrieval, Workflow
from generation.ports import ChatModel, Message
from generation.prompts import SCORE_CRITERIA, SCORER_SCHEMA, scorer_messages

logger = logging.getLogger(__name__)


class Score(BaseModel):
    """A verdict: ``value`` in [0, 1] (the mean rating mapped from 1–5), per-criterion ratings, reasons."""

    model_config = ConfigDict(frozen=True)

    value: float
    ratings: dict[str, int]
    reasons: tuple[str, ...] = ()


class Scorer:
    """Rates workflows with ``model``; an unreadable verdict scores 0 (and is logged)."""

    def __init__(self, model: ChatModel, *, max_tokens: int = 300) -> None:
        self.model = model
        self._max_tokens = max_tokens

    async def score(self, retrieval: Retrieval, workflow: Workflow) -> Score:
        return await self.rate(scorer_messages(retrieval, workflow))

    async def rate(self, messages: list[Message]) -> Score:
        """The verdict on the workflow in a Scorer prompt (``scorer_messages``, ``review_messages``)."""
        raw = await self.model.complete(messages, schema=SCORER_SCHEMA, max_tokens=self._max_tokens)
        try:
            reply = json.loads(raw)
            ratings = {c: int(reply[c]) for c in SCORE_CRITERIA}
            reasons = tuple(str(r) for r in reply.get("reasons", []))
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            logger.warning("unreadable verdict from %s: %s", self.model.name, exc)
            return Score(value=0.0, ratings={}, reasons=("the scorer's verdict was unreadable",))
        clipped = {c: min(max(r, 1), 5) for c, r in ratings.items()}
        value = (sum(clipped.values()) / len(clipped) - 1) / 4
        return Score(value=round(value, 4), ratings=clipped, reasons=reasons)

    async def best(self, retrieval: Retrieval, candidates: Sequence[Workflow]) -> tuple[Workflow, Score]:
        """The highest-scoring candidate (the first on ties)."""
        scored = [(w, await self.score(retrieval, w)) for w in candidates]
        return max(scored, key=lambda pair: pair[1].value)
