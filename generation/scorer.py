"""FlowXpert's Scorer: a chat model rates a workflow for its question and context (0–1, with reasons).

Used to pick the best of several planner candidates, as the reward of the planner's RL, and measured
by its pairwise accuracy. Each rating counts as G-Eval's expected rating (Liu et al., 2023, "G-Eval: NLG
Evaluation using GPT-4 with Better Human Alignment"): the digits 1–5 weighted by the probabilities the
model gave them where it wrote the rating. A small model writes the same digits for most workflows; the
probabilities behind them still differ, so verdicts rarely tie.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, ValidationError

from core.types import Retrieval, Workflow
from generation.ports import ChatModel, Message, TokenLogprobs
from generation.prompts import SCORE_CRITERIA, SCORER_SCHEMA, scorer_messages

logger = logging.getLogger(__name__)
SCALE = ("1", "2", "3", "4", "5")
TOP_LOGPROBS = 20  # OpenAI's most: enough to hold all five digits where the model doubts
_KEY_BEFORE = re.compile(r'"(\w+)"\s*:\s*$')


def expected_ratings(tokens: Sequence[TokenLogprobs]) -> dict[str, float]:
    """For each criterion whose rating is one generated digit, the mean of 1–5 weighted by the probabilities
    of those digits at that place (renormalised over the digits among the top tokens); a criterion whose
    rating token is not found is left out."""
    seen, expected = "", {}
    for token in tokens:
        key = _KEY_BEFORE.search(seen)
        if key and key.group(1) in SCORE_CRITERIA and key.group(1) not in expected and token["token"].strip() in SCALE:
            weights = dict.fromkeys(range(1, 6), 0.0)
            for alternative, logprob in token["top"].items():
                if alternative.strip() in SCALE:
                    weights[int(alternative.strip())] += math.exp(logprob)
            total = sum(weights.values())
            if total > 0:
                expected[key.group(1)] = sum(r * w for r, w in weights.items()) / total
        seen += token["token"]
    return expected


class Score(BaseModel):
    """A verdict: ``value`` in [0, 1] (the mean expected rating mapped from 1–5), the per-criterion ratings
    as written, reasons."""

    model_config = ConfigDict(frozen=True)

    value: float
    ratings: dict[str, int]
    reasons: tuple[str, ...] = ()


class Scorer:
    """Rates workflows with ``model``; an unreadable verdict scores 0 (and is logged)."""

    def __init__(self, model: ChatModel, *, max_tokens: int = 200) -> None:
        self.model = model
        self._max_tokens = max_tokens

    async def score(self, retrieval: Retrieval, workflow: Workflow) -> Score:
        return await self.rate(scorer_messages(retrieval, workflow))

    async def rate(self, messages: list[Message]) -> Score:
        """The verdict on the workflow in a Scorer prompt (``scorer_messages``, ``review_messages``)."""
        raw, tokens = await self.model.complete_with_logprobs(
            messages, schema=SCORER_SCHEMA, max_tokens=self._max_tokens, top=TOP_LOGPROBS
        )
        try:
            reply = json.loads(raw)
            ratings = {c: int(reply[c]) for c in SCORE_CRITERIA}
            reasons = tuple(str(r) for r in reply.get("reasons", []))
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            logger.warning("unreadable verdict from %s: %s", self.model.name, exc)
            return Score(value=0.0, ratings={}, reasons=("the scorer's verdict was unreadable",))
        clipped = {c: min(max(r, 1), 5) for c, r in ratings.items()}
        weighted = clipped | expected_ratings(tokens)
        value = (sum(weighted.values()) / len(weighted) - 1) / 4
        return Score(value=round(value, 4), ratings=clipped, reasons=reasons)

    async def best(self, retrieval: Retrieval, candidates: Sequence[Workflow]) -> tuple[Workflow, Score]:
        """The highest-scoring candidate (the first on ties)."""
        scored = [(w, await self.score(retrieval, w)) for w in candidates]
        return max(scored, key=lambda pair: pair[1].value)
