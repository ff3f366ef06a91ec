"""The Scorer's verdicts: written ratings weighted by the model's own probabilities (G-Eval)."""

from __future__ import annotations

import json
import math
from typing import Any

from core.settings import OllamaSettings
from core.types import Chunk, Passage, Retrieval, Step, Workflow
from generation.ollama import OllamaChatModel
from generation.ports import TokenLogprobs
from generation.prompts import SCORE_CRITERIA
from generation.scorer import Scorer, expected_ratings
from tests.fakes.ollama import fake_ollama


def tokens(*pieces: str | tuple[str, dict[str, float]]) -> list[TokenLogprobs]:
    """Tokens as a backend reports them; a bare string is a certain token."""
    out: list[TokenLogprobs] = []
    for piece in pieces:
        token, probs = piece if isinstance(piece, tuple) else (piece, {piece: 1.0})
        out.append({"token": token, "top": {t: math.log(p) for t, p in probs.items()}})
    return out


def test_a_rating_counts_as_the_mean_digit_under_the_models_probabilities() -> None:
    reply = tokens(
        '{"', "grounded", '":', " ", ("4", {"4": 0.5, "5": 0.25, " 5": 0.25, "x": 0.2}),
        ', "', "complete", '": ', ("2", {"2": 0.6, "1": 0.2, "\n": 0.2}),
        ', "', "reasons", '": ["', ("3", {"3": 0.9, "4": 0.1}), ' steps"]}',
    )  # fmt: skip
    expected = expected_ratings(reply)
    # 5 twice (" 5" is the same digit); text that is no digit is left out of the weights.
    assert expected == {"grounded": 4.5, "complete": (2 * 0.6 + 0.2) / 0.8}


def test_without_logprobs_nothing_is_weighted() -> None:
    assert expected_ratings([]) == {}
    assert expected_ratings(tokens('{"grounded": 4, ', '"complete": 3}')) == {}


RETRIEVAL = Retrieval(
    query="disk full on the database host",
    passages=(Passage(chunk=Chunk(chunk_id="db.md#0", doc_id="db.md", ordinal=0, title="Disk", heading_path=("Fix",),
                                  text="Delete old WAL archives, then grow the volume."), score=1.0),),
)  # fmt: skip
WORKFLOW = Workflow(title="Disk", steps=(Step(id="1", type="terminal", text="Grow the volume"),))


async def test_where_no_rating_is_a_token_of_its_own_the_written_ratings_stand() -> None:
    def verdict(_body: dict[str, Any]) -> str:
        return json.dumps(dict.fromkeys(SCORE_CRITERIA, 4) | {"reasons": ["it skips the WAL archives"]})

    async with fake_ollama(verdict) as server:
        model = OllamaChatModel(OllamaSettings(host=server.url, model="llama3.1:8b", timeout_s=5))
        try:
            score = await Scorer(model).score(RETRIEVAL, WORKFLOW)
        finally:
            await model.aclose()
    assert server.requests[-1][1]["logprobs"] is True
    assert score.value == 0.75 and score.ratings == dict.fromkeys(SCORE_CRITERIA, 4)
    assert score.reasons == ("it skips the WAL archives",)
