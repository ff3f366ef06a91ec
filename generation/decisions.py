"""A decision step's branch from check results: by the rule the step states, else the model's judgement.

A rule is a comparison in the step's own words ("> 0.05", "above 80%", "equals 0", "returns 200"),
read from the step text and never from a tool's output. It holds when any value meets it (one
series is enough, as for an alert). Without a rule the chat model judges the results; it can only
answer yes, no or undecided, with a reason: nothing it writes runs, adds or approves anything.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from core.errors import ModelUnavailable, PlanError
from core.types import Action, ToolResult
from generation.ports import ChatModel
from generation.prompts import DECISION_SCHEMA, decision_messages

Branch = Literal["yes", "no"]

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
}  # fmt: skip
_WORDS = {
    "above": ">", "more than": ">", "greater than": ">", "higher than": ">", "exceeds": ">",
    "exceed": ">", "at least": ">=", "below": "<", "less than": "<", "lower than": "<",
    "fewer than": "<", "at most": "<=", "equals": "==", "equal to": "==", "returns": "==", "return": "==",
}  # fmt: skip
_NUMBER = r"(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\s*(%|percent\b)?"
_RULE = re.compile(
    r"(?<![=!<>~])(==|!=|>=|<=|>|<)\s*" + _NUMBER
    + r"|\b(" + "|".join(sorted(map(re.escape, _WORDS), key=len, reverse=True)) + r")\s+" + _NUMBER,
    re.IGNORECASE,
)  # fmt: skip
MAX_TOKENS = 200


@dataclass(frozen=True)
class Rule:
    """``value <op> threshold``; a percentage compares ratios (all values within 0–1) as ×100."""

    op: str
    threshold: float
    percent: bool = False

    def holds(self, values: Sequence[float]) -> bool:
        return any(_OPS[self.op](v, self.threshold) for v in self._scaled(values))

    def explain(self, values: Sequence[float]) -> str:
        shown = ", ".join(f"{v:g}" for v in self._scaled(values)[:5])
        unit = "%" if self.percent else ""
        return f"{shown} {self.op} {self.threshold:g}{unit} is {'true' if self.holds(values) else 'false'}"

    def _scaled(self, values: Sequence[float]) -> list[float]:
        if self.percent and all(0 <= v <= 1 for v in values):
            return [v * 100 for v in values]
        return list(values)


def rule_of(text: str) -> Rule | None:
    """The first comparison with a number that ``text`` states, or None."""
    match = _RULE.search(text)
    if match is None:
        return None
    symbol, number, percent, word, word_number, word_percent = match.groups()
    op = symbol or _WORDS[word.lower()]
    return Rule(op=op, threshold=float(number or word_number), percent=bool(percent or word_percent))


@dataclass(frozen=True)
class Verdict:
    """The branch taken (None: undecided), why, and by what: ``rule`` or ``model``."""

    branch: Branch | None
    reason: str
    by: Literal["rule", "model", "none"]


async def decide(question: str, evidence: Sequence[tuple[Action, ToolResult]], model: ChatModel | None) -> Verdict:
    """The branch of the decision ``question`` given the checks that ran for it (latest last)."""
    if not evidence:
        return Verdict(None, "no check ran that answers this question", "none")
    rule = rule_of(question)
    numbers = next((r.data["values"] for _, r in reversed(evidence) if r.data and r.data.get("values")), None)
    if rule is not None and numbers:
        holds = rule.holds(numbers)
        return Verdict("yes" if holds else "no", rule.explain(numbers), "rule")
    if model is None:
        return Verdict(None, "the step states no rule for these results and no model is configured", "none")
    return await _judge(model, question, [f"{a.tool} → {r.status}: {r.summary}" for a, r in evidence])


async def _judge(model: ChatModel, question: str, evidence: list[str]) -> Verdict:
    try:
        raw = await model.complete(decision_messages(question, evidence), schema=DECISION_SCHEMA, max_tokens=MAX_TOKENS)
    except (ModelUnavailable, PlanError) as exc:
        return Verdict(None, f"no model could judge the results: {exc}", "none")
    try:
        reply = json.loads(raw)
        branch, reason = reply["branch"], str(reply["reason"]).strip()[:300]
    except (ValueError, KeyError, TypeError):
        return Verdict(None, "the model's answer was unreadable", "none")
    if branch not in ("yes", "no"):
        return Verdict(None, f"the model could not tell: {reason}", "model")
    return Verdict(branch, reason or "the model gave no reason", "model")
