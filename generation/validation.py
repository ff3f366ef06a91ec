"""Workflow validation: the structural rules every workflow must meet before anyone sees it."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from core.errors import PlanError
from core.types import Step, ToolSpec, Workflow

MAX_STEPS = 30
MAX_TEXT = 500


def problems(workflow: Workflow, sources: Collection[str], tools: Mapping[str, ToolSpec] | None = None) -> list[str]:
    """Everything wrong with ``workflow``; ``sources`` are the chunk ids it may cite and ``tools`` the
    catalogue its actions may call (none: no step may carry an action). [] = valid."""
    steps = workflow.steps
    if not steps:
        return ["the workflow has no steps"]
    found: list[str] = []
    if len(steps) > MAX_STEPS:
        found.append(f"{len(steps)} steps, more than {MAX_STEPS}")
    ids = [s.id for s in steps]
    if len(set(ids)) != len(ids):
        found.append("step ids are not unique")
    known = set(ids)
    edges: dict[str, list[str]] = {}
    for step in steps:
        targets = [step.next] if step.next else []
        if step.branches:
            targets += [step.branches.yes, step.branches.no]
        edges[step.id] = targets
        found += _shape(step.id, step.type, bool(step.next), bool(step.branches))
        found += [f"{step.id} leads to unknown step {t}" for t in targets if t not in known]
        if not step.text.strip() or len(step.text) > MAX_TEXT:
            found.append(f"{step.id} needs a text of 1 to {MAX_TEXT} characters")
        found += [
            f"{step.id} cites {c.chunk_id}, which was not retrieved"
            for c in step.citations
            if c.chunk_id not in sources
        ]
        found += _action(step, tools or {})
    incoming = {t for targets in edges.values() for t in targets}
    starts = [i for i in ids if i not in incoming]
    if starts != [ids[0]]:
        found.append(f"the workflow must have one start, {ids[0]}; steps without a way in: {starts}")
    reached = _reachable(ids[0], edges)
    if orphans := [i for i in ids if i not in reached]:
        found.append(f"steps not reachable from the start: {orphans}")
    if not any(s.type == "terminal" for s in steps if s.id in reached):
        found.append("no terminal step is reachable from the start")
    return found


def validate(workflow: Workflow, sources: Collection[str], tools: Mapping[str, ToolSpec] | None = None) -> Workflow:
    """``workflow`` if valid, else ``PlanError`` listing the problems."""
    if found := problems(workflow, sources, tools):
        raise PlanError("invalid workflow: " + "; ".join(found), raw=workflow.model_dump_json())
    return workflow


def _shape(step_id: str, kind: str, has_next: bool, has_branches: bool) -> list[str]:
    if kind == "process" and (not has_next or has_branches):
        return [f"{step_id} is a process step: it needs a next step and no branches"]
    if kind == "decision" and (has_next or not has_branches):
        return [f"{step_id} is a decision: it needs yes and no branches and no next step"]
    if kind == "terminal" and (has_next or has_branches):
        return [f"{step_id} is a terminal step: it cannot lead anywhere"]
    return []


def _action(step: Step, tools: Mapping[str, ToolSpec]) -> list[str]:
    """The catalogue decides: the tool must be offered, its arguments valid, and the mode the tool's own
    (whatever a document or a model wrote, a write tool's call is a write)."""
    if step.action is None:
        return []
    spec = tools.get(step.action.tool)
    if spec is None:
        return [f"{step.id} calls {step.action.tool!r}, which is not in the tool catalogue"]
    found = []
    if step.action.mode != spec.mode:
        found.append(f"{step.id} calls {spec.name} as {step.action.mode}, but it is a {spec.mode} tool")
    if problem := spec.problem(step.action.args):
        found.append(f"{step.id} calls {spec.name} with invalid arguments: {problem}")
    return found


def _reachable(start: str, edges: dict[str, list[str]]) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for target in edges.get(todo.pop(), []):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen
