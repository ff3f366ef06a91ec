"""Actions from runbook text: the concrete check a sentence gives becomes its step's tool call.

An inline code span holding a command that a tool's allowlist accepts becomes that command, one
holding a PromQL expression becomes a query, an http(s) URL a probe. Only tools of the catalogue
are used and the catalogue sets the mode, so text can propose a call but never make a write a read,
nor call anything the deployment did not configure. Templates (``<namespace>``) and shell pipelines
are not concrete checks and get no action.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Mapping
from typing import Any

from core.runbooks import steps_of
from core.types import Action, Chunk, Step, ToolSpec, Workflow
from generation.extractive import clean

_CODE = re.compile(r"`([^`\n]+)`")
_URL = re.compile(r"https?://[^\s`<>()\[\]'\"]+")
_PLACEHOLDER = re.compile(r"<[A-Za-z][\w.-]*>")
_SHELL_SYNTAX = {"|", "||", "&&", ";", ">", ">>", "<", "&"}
_PROMQL = re.compile(
    r"[A-Za-z_:][\w:]*\s*[{\[(]"  # a selector, a range or a function call
    r"|[A-Za-z_:][\w:]*\s+(?:by|without)\s*\("  # an aggregation: sum by (job) (…)
    r"|[A-Za-z_:][\w:]*\s*(?:==|!=|>=|<=|>|<)\s*-?\d"  # a metric compared with a number
)
# A comparison with a number at the very end of a query is the step's rule, not part of the
# question: stripped, the query returns the values the rule is checked on (and shown) instead of
# an empty result when the condition is false.
_TRAILING_RULE = re.compile(r"\s*(?:==|!=|>=|<=|>|<)\s*-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?\s*$")
_LOGICAL = re.compile(r"\b(?:and|or|unless|bool)\b")


def action_for(text: str, tools: Mapping[str, ToolSpec]) -> Action | None:
    """The first concrete check in ``text`` (a runbook sentence, code spans in backticks) that a
    catalogue tool accepts, or None."""
    for code in _CODE.findall(text):
        if _PLACEHOLDER.search(code):
            continue
        if (argv := _argv(code)) and (action := _accepting(tools, {"argv": argv})):
            return action
        if _PROMQL.match(code.strip()) and (action := _accepting(tools, {"query": _query(code)})):
            return action
    for url in _URL.findall(text):
        url = url.rstrip(".,;:!?")
        if not _PLACEHOLDER.search(url) and (action := _accepting(tools, {"url": url})):
            return action
    return None


def attach_actions(workflow: Workflow, chunks: Mapping[str, Chunk], tools: Mapping[str, ToolSpec]) -> Workflow:
    """``workflow`` with an action on every step whose text, or the runbook sentence it was written
    from (found in its cited ``chunks``), gives a concrete check. Steps with an action keep it."""
    steps = []
    for step in workflow.steps:
        if step.action is None:
            candidates = (action_for(t, tools) for t in (step.text, *_source_sentences(step, chunks)))
            if action := next((a for a in candidates if a is not None), None):
                step = step.model_copy(update={"action": action})
        steps.append(step)
    return workflow.model_copy(update={"steps": tuple(steps)})


def _source_sentences(step: Step, chunks: Mapping[str, Chunk]) -> Iterator[str]:
    """The raw sentences of the cited chunks that read as ``step.text`` once cleaned (extractive steps)."""
    for citation in step.citations:
        if (chunk := chunks.get(citation.chunk_id)) is not None:
            yield from (s for s in steps_of(chunk.text) if clean(s) == step.text)


def _accepting(tools: Mapping[str, ToolSpec], args: dict[str, Any]) -> Action | None:
    """A call of the first catalogue tool whose schema accepts exactly ``args``, in the tool's mode."""
    for spec in tools.values():
        if spec.problem(args) is None:
            return Action(tool=spec.name, args=args, mode=spec.mode)
    return None


def _argv(code: str) -> list[str] | None:
    try:
        argv = shlex.split(code)
    except ValueError:
        return None
    if not argv or any(w in _SHELL_SYNTAX or "$(" in w or "`" in w for w in argv):
        return None
    return argv


def _query(code: str) -> str:
    query = code.strip()
    return query if _LOGICAL.search(query) else _TRAILING_RULE.sub("", query)
