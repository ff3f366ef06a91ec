"""GRPO rewards for the Planner: pure functions of one completion, importable without trl.

A completion is the Planner's raw reply (the JSON of ``generation.prompts.WORKFLOW_SCHEMA``, or the
numbered lines of ``generation.lines``). It is read by the serving parser (lines: with the serving
link repair) and checked by the serving validator, then rewarded with

* a **rubric** in [0, 1], the verifiable part of the Scorer's criteria: structurally valid
  (``generation.validation``), grounded (every step cites a source shown in the prompt), complete
  (it ends in a terminal step and decides or acts before), actionable (distinct, non-trivial step texts);
* **STEPScore** in [0, 1]: the headline F1 (lexical similarity) against the accepted workflow;
* the **Scorer's verdict** in [0, 1] (``generation.scorer``), FlowXpert's RL reward, when the job has a
  Scorer model (``trainer.train_job`` adds it to the verdict; ``None`` here).

``reward = rubric_weight · rubric + stepscore_weight · stepscore + scorer_weight · scorer`` for a readable
workflow (the last term only where a Scorer rated it). A reply that
is not a workflow scores ``INVALID`` plus at most ``INVALID_SHAPING`` for the gold step words it
contains, so that every readable workflow outranks every unreadable reply while a model that cannot
yet write the JSON still gets a gradient (GRPO learns nothing from a group of equal rewards).

GRPO dataset rows carry, besides ``prompt``: ``gold_steps`` (the accepted workflow's steps,
``[{"type", "text"}]``), ``n_sources`` (how many numbered sources the prompt shows) and
``reply_format`` ("json" when absent).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.errors import PlanError
from core.types import Chunk, Passage, Retrieval, Workflow
from generation.lines import read_lines
from generation.planner import parse_workflow, unsupported
from generation.prompts import ReplyFormat
from generation.stepscore import THRESHOLD, lexical_similarity, score_case, token_f1
from generation.validation import problems

INVALID = -1.0
INVALID_SHAPING = 0.5


class RewardWeights(BaseModel):
    """How much the rubric and the STEPScore count in a readable workflow's reward."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rubric: float = Field(1.0, ge=0)
    stepscore: float = Field(1.0, ge=0)
    scorer: float = Field(1.0, ge=0)


class Verdict(BaseModel):
    """One completion judged: whether it is a workflow, and its rubric and STEPScore if it is."""

    model_config = ConfigDict(frozen=True)

    readable: bool
    rubric: float = 0.0
    stepscore: float = 0.0
    problems: tuple[str, ...] = ()
    overlap: float = Field(0.0, description="Token F1 of an unreadable reply against the gold steps' words.")
    workflow: Workflow | None = Field(None, description="The reply read as a workflow, citing sources '1'..'n'.")
    scorer: float | None = Field(None, description="The Scorer's verdict on ``workflow``, where one rated it.")

    def reward(self, weights: RewardWeights) -> float:
        if not self.readable:
            return INVALID + INVALID_SHAPING * self.overlap
        rated = weights.scorer * self.scorer if self.scorer is not None else 0.0
        return weights.rubric * self.rubric + weights.stepscore * self.stepscore + rated


def completion_text(completion: str | Sequence[Mapping[str, Any]]) -> str:
    """The reply's text, for standard (string) and conversational (message list) completions alike."""
    if isinstance(completion, str):
        return completion
    return "".join(str(m.get("content") or "") for m in completion if m.get("role") == "assistant")


def judge(
    text: str, gold_steps: Sequence[Mapping[str, str]], n_sources: int, reply_format: ReplyFormat = "json"
) -> Verdict:
    """The verdict on one reply to a prompt that showed ``n_sources`` numbered sources."""
    sources = _numbered_sources(n_sources)
    try:
        if reply_format == "lines":
            workflow = read_lines(text, "", sources.passages).workflow
            if not workflow.steps:
                raise PlanError("no step in the reply", raw=text)
        else:
            workflow = parse_workflow(text, sources, 1.0)
    except PlanError:
        gold_words = " ".join(g["text"] for g in gold_steps)
        return Verdict(readable=False, overlap=token_f1(text, gold_words) if gold_words else 0.0)
    found = problems(workflow, {str(n) for n in range(1, n_sources + 1)}) + unsupported(workflow)
    return Verdict(
        readable=True,
        rubric=rubric(workflow, found),
        stepscore=stepscore(workflow, gold_steps),
        problems=tuple(found),
        workflow=workflow,
    )


def rubric(workflow: Workflow, found: Sequence[str]) -> float:
    """Mean of four checks in [0, 1]: valid, grounded, complete, actionable."""
    steps = workflow.steps
    valid = 0.0 if found else 1.0
    grounded = sum(bool(s.citations) for s in steps) / len(steps)
    complete = 0.5 * any(s.type == "terminal" for s in steps) + 0.5 * any(s.type != "terminal" for s in steps)
    texts = [" ".join(s.text.lower().split()) for s in steps]
    actionable = sum(len(t.split()) >= 3 for t in set(texts)) / len(texts)
    return (valid + grounded + complete + actionable) / 4


def stepscore(workflow: Workflow, gold_steps: Sequence[Mapping[str, str]]) -> float:
    """STEPScore's headline F1 (lexical similarity, its threshold) of ``workflow`` against the gold steps."""
    pred = [{"type": s.type, "text": s.text} for s in workflow.steps if s.text]
    gold = [{"type": g["type"], "text": g["text"]} for g in gold_steps if g["text"].strip()]
    result = score_case(pred, gold, lexical_similarity, THRESHOLD["lexical"], abstained=False, unanswerable=False)
    return float(result["f1"])


def _numbered_sources(n: int) -> Retrieval:
    """Stand-ins for the prompt's sources [1]..[n], so that the serving parser resolves citations to "1".."n"."""
    passages = tuple(
        Passage(chunk=Chunk(chunk_id=str(i), doc_id="prompt", ordinal=i, title="", text=""), score=0.0)
        for i in range(1, n + 1)
    )
    return Retrieval(query="", passages=passages)
