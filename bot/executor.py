"""Running a workflow's checks, AOI-style: read actions (probes) run, write actions wait for an approval.

The walk starts at the workflow's first step. The read actions of a stretch of steps up to the next
decision or write run concurrently, within the per-step and per-run budgets of time and output.
A decision takes its branch by the rule its text states, else by the model's judgement of the
results (``generation.decisions``); undecided stops the run there, with the reason. A write action
pauses the run (``waiting_approval``) with an ``Approval`` row; ``decide`` runs it only for an
approver of the run's channel and only once (a compare-and-set on that row), audits it, and walks
on. The catalogue, not the workflow, says what is a write. Everything stored, shown or given to
the model is redacted and condensed first.

Run states: running → waiting_approval → running … → finished (a terminal step was reached) or
stopped (undecided, rejected, out of budget, a loop).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.records import Approval
from connectors.redaction import redact
from core.settings import ToolSettings
from core.types import Action, Retrieval, RunEvent, Step, ToolResult, ToolSpec, Workflow
from generation.actions import attach_actions, needs
from generation.decisions import decide
from generation.ports import ChatModel
from generation.validation import validate
from trainer.store import ExecutorRun, RecordStore

OnEvent = Callable[[RunEvent], Awaitable[None]]
Outcome = Literal["resolved", "not_resolved"]
MAX_VISITS = 3  # a step reached more often means the workflow loops on unchanged results


class Tools(Protocol):
    """What the executor needs of the toolbox (``connectors.tools.Toolbox``)."""

    @property
    def tools(self) -> Mapping[str, ToolSpec]: ...

    async def call(self, action: Action, *, approved_by: str | None = None, cap: int | None = None) -> ToolResult: ...


@dataclass(frozen=True)
class RunReport:
    """Where a run stands: its events so far, and the write steps waiting for an approval."""

    run_id: int
    state: str
    events: tuple[RunEvent, ...]
    pending: tuple[tuple[str, Action], ...] = ()


@dataclass(frozen=True)
class ApprovalAnswer:
    """What became of an Approve/Reject click; ``report`` is the run afterwards when it was accepted."""

    accepted: bool
    message: str
    report: RunReport | None = None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _event(kind: Any, step: Step | None = None, **values: Any) -> RunEvent:
    """An event with every text redacted: step texts come from documents, reasons from a model."""
    text = redact(values.pop("text", step.text if step else ""))
    reason = redact(values.pop("reason", ""))
    if (action := values.get("action")) is not None:
        values["action"] = action.model_copy(update={"args": _redacted(action.args)})
    return RunEvent(kind=kind, step_id=step.id if step else None, text=text, reason=reason, at=_now(), **values)


def _redacted(value: Any) -> Any:
    """A JSON value with every string in it redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    return value


@dataclass
class _Walk:
    """The state of one walk: the events so far and the budgets left."""

    run_id: int
    workflow: Workflow
    events: list[RunEvent]
    on_event: OnEvent | None
    deadline: float
    output_left: int
    visits: dict[str, int] = field(default_factory=dict)
    evidence: list[tuple[Action, ToolResult]] = field(default_factory=list)

    def step(self, step_id: str) -> Step:
        return next(s for s in self.workflow.steps if s.id == step_id)

    async def emit(self, event: RunEvent) -> None:
        self.events.append(event)
        if self.on_event is not None:
            await self.on_event(event)


class Executor:
    """Runs workflows' checks with ``toolbox``; records runs, approvals and audit events in ``records``."""

    def __init__(self, records: RecordStore, toolbox: Tools, cfg: ToolSettings, model: ChatModel | None) -> None:
        self._records = records
        self._toolbox = toolbox
        self._cfg = cfg
        self._model = model

    async def run(
        self,
        workflow: Workflow,
        *,
        query: str,
        user: str,
        interaction_id: int | None = None,
        channel: str | None = None,
        thread_ts: str | None = None,
        retrieval: Retrieval | None = None,
        on_event: OnEvent | None = None,
        known: Mapping[str, str] | None = None,
    ) -> RunReport:
        """Walk ``workflow`` from its start until it finishes, stops or waits for an approval.

        With the ``retrieval`` the workflow was planned from, steps get the actions their runbook
        sentences give (``generation.actions``), and training can rebuild the planner's prompt.
        ``known`` fills the actions' placeholders (an alert's labels, ``entities_of(query)``); an
        action still missing a value is not run (its probe event is ``refused``, naming what it needs).
        Raises ``PlanError`` when a step's action is not a valid call of the catalogue. Approvals
        can only be given in ``channel`` (a run without one, from the CLI, can have none)."""
        if retrieval is not None:
            chunks = {p.chunk.chunk_id: p.chunk for p in retrieval.passages}
            workflow = attach_actions(workflow, chunks, self._toolbox.tools, known)
        elif known:
            workflow = attach_actions(workflow, {}, self._toolbox.tools, known)
        cited = {c.chunk_id for s in workflow.steps for c in s.citations}
        validate(workflow, cited, self._toolbox.tools)
        row = ExecutorRun(
            interaction_id=interaction_id,
            user=user,
            query=query,
            incident=workflow.title,
            workflow=workflow.model_dump(mode="json"),
            steps={"events": [], "retrieval": retrieval.model_dump(mode="json") if retrieval else None},
            channel=channel,
            thread_ts=thread_ts,
        )
        run_id = (await self._records.transaction(lambda s: _added(s, row))).id
        walk = self._walk(run_id, workflow, [], on_event)
        await walk.emit(_event("started", text=workflow.title, user=user))
        return await self._walk_from(walk, workflow.steps[0].id)

    async def decide(
        self, run_id: int, step_id: str, *, user: str, approve: bool, channel: str, on_event: OnEvent | None = None
    ) -> ApprovalAnswer:
        """Approve (run the write, then walk on) or reject (stop the run) the write waiting at ``step_id``.

        Only a configured approver of ``channel``, the run's own channel, may decide, and only
        while the approval is pending: of two clicks at once, exactly one is accepted."""
        if user not in self._cfg.approvers.get(channel, ()):
            await self._records.audit(user, "approval_refused", {"run_id": run_id, "step_id": step_id})
            return ApprovalAnswer(False, f"<@{user}> is not an approver in this channel; nothing was run")
        decision = "approved" if approve else "rejected"
        if refusal := await self._records.transaction(lambda s: _claim(s, run_id, step_id, channel, user, decision)):
            return ApprovalAnswer(False, refusal)
        run = await self._records.transaction(lambda s: s.get(ExecutorRun, run_id))
        assert run is not None  # _claim found it
        workflow = Workflow.model_validate(run.workflow)
        walk = self._walk(run_id, workflow, [RunEvent.model_validate(e) for e in run.steps["events"]], on_event)
        step = walk.step(step_id)
        assert step.action is not None  # an approval row exists only for a write step
        if not approve:
            await self._records.audit(user, "write_rejected", _audit(run_id, step, None))
            await walk.emit(_event("rejected", step, action=step.action, user=user))
            return ApprovalAnswer(True, f"rejected by <@{user}>", await self._stop(walk, "a write was rejected"))
        await walk.emit(_event("approved", step, action=step.action, user=user))
        result = await self._toolbox.call(step.action, approved_by=user)
        await self._records.transaction(lambda s: _record_write(s, run_id, step_id, result))
        await self._records.audit(user, "write_approved", _audit(run_id, step, result))
        await walk.emit(_event("write", step, action=step.action, result=result, user=user))
        if result.status != "ok":
            return ApprovalAnswer(True, f"approved by <@{user}>; it failed", await self._stop(walk, "a write failed"))
        return ApprovalAnswer(True, f"approved by <@{user}>", await self._walk_from(walk, _after_write(step)))

    async def mark_outcome(self, run_id: int, outcome: Outcome, user: str) -> RunReport:
        """Record whether the run resolved the incident (the engineer's word; the latest one counts)."""
        event = _event("outcome", text=outcome.replace("_", " "), user=user)

        def mark(session: Session) -> ExecutorRun:
            run = session.get(ExecutorRun, run_id)
            if run is None:
                raise KeyError(run_id)
            run.outcome = outcome
            run.steps = {**run.steps, "events": [*run.steps["events"], event.model_dump(mode="json")]}
            return run

        run = await self._records.transaction(mark)
        await self._records.audit(user, "run_outcome", {"run_id": run_id, "outcome": outcome})
        return await self._report(run_id, run.state, [RunEvent.model_validate(e) for e in run.steps["events"]])

    def _walk(self, run_id: int, workflow: Workflow, events: list[RunEvent], on_event: OnEvent | None) -> _Walk:
        used = sum(_size(e.result) for e in events if e.result is not None)
        deadline = asyncio.get_running_loop().time() + self._cfg.run_timeout_s
        return _Walk(run_id, workflow, events, on_event, deadline, self._cfg.run_output_bytes - used)

    async def _walk_from(self, walk: _Walk, step_id: str | None) -> RunReport:
        while step_id is not None:
            stretch = _stretch(walk.workflow, step_id, self._toolbox.tools)
            if any(walk.visits.get(s.id, 0) >= MAX_VISITS for s in stretch):
                return await self._stop(walk, "the workflow loops without new results")
            for s in stretch:
                walk.visits[s.id] = walk.visits.get(s.id, 0) + 1
            if stop := await self._probe(walk, stretch):
                return await self._stop(walk, stop)
            last = stretch[-1]
            if self._is_write(last) and last.type != "decision":
                return await self._pause(walk, last)
            if last.type == "terminal":
                return await self._finish(walk)
            if last.type == "process":  # a stretch ends at a process step only before a write or a loop
                step_id = last.next
                continue
            await self._save(walk, "running")  # the results so far are kept while the model judges
            verdict = await decide(last.text, walk.evidence, self._model)
            walk.evidence = []
            if verdict.branch is None:
                await walk.emit(_event("undecided", last, reason=verdict.reason))
                return await self._stop(walk, f"{last.id} is undecided: {verdict.reason}")
            await walk.emit(_event("decision", last, branch=verdict.branch, reason=f"{verdict.by}: {verdict.reason}"))
            if verdict.branch == "yes" and self._is_write(last):
                return await self._pause(walk, last)
            assert last.branches is not None
            step_id = last.branches.yes if verdict.branch == "yes" else last.branches.no
        return await self._finish(walk)

    def _is_write(self, step: Step) -> bool:
        """The catalogue's word on the step's action, whatever mode the workflow wrote. A write still
        missing a placeholder's value asks for no approval: it is reported as not run, like a read."""
        action = step.action
        return action is not None and not action.missing and self._toolbox.tools[action.tool].mode == "write"

    async def _probe(self, walk: _Walk, stretch: list[Step]) -> str | None:
        """Run the stretch's read actions concurrently and emit their events in step order; a reason
        to stop when a budget ran out."""
        reads = [s for s in stretch if s.action is not None and not self._is_write(s)]
        gate = asyncio.Semaphore(self._cfg.concurrency)
        cap = max(1, min(self._cfg.output_bytes, walk.output_left))

        async def one(step: Step) -> ToolResult:
            assert step.action is not None
            if step.action.missing:  # a placeholder nobody filled: the command as written cannot run
                return ToolResult(status="refused", summary=f"not run, {needs(step.action)}")
            async with gate:
                return await self._toolbox.call(step.action, cap=cap)

        tasks = {s.id: asyncio.create_task(one(s)) for s in reads}
        remaining = walk.deadline - asyncio.get_running_loop().time()
        if tasks:
            await asyncio.wait(tasks.values(), timeout=max(remaining, 0))
        out_of_time = False
        for step in stretch:
            if step.action is None:
                if step.type != "decision":  # the engineer does it by hand; a decision is taken next
                    await walk.emit(_event("manual", step))
                continue
            if step.id not in tasks:
                continue  # a write: it waits for its approval
            task = tasks[step.id]
            if task.done():
                result = task.result()
            else:
                task.cancel()
                out_of_time = True
                result = ToolResult(status="timeout", summary="the run's time budget was spent before it finished")
            walk.output_left -= _size(result)
            walk.evidence.append((step.action, result))
            await walk.emit(_event("probe", step, action=step.action, result=result))
        await asyncio.gather(*tasks.values(), return_exceptions=True)  # let cancelled calls clean up
        if out_of_time:
            return f"the run's time budget ({self._cfg.run_timeout_s:g} s) is spent"
        if walk.output_left <= 0:
            return f"the run's output budget ({self._cfg.run_output_bytes} bytes) is spent"
        return None

    async def _pause(self, walk: _Walk, step: Step) -> RunReport:
        assert step.action is not None
        action = step.action

        def request(session: Session) -> bool:
            query = select(Approval.id).where(Approval.run_id == walk.run_id, Approval.step_id == step.id)
            if session.scalars(query).first() is not None:
                return False
            session.add(Approval(run_id=walk.run_id, step_id=step.id, action=action.model_dump(mode="json")))
            return True

        if not await self._records.transaction(request):  # a loop came back to it: one approval per step
            return await self._stop(walk, f"the write at {step.id} was already requested once in this run")
        await walk.emit(_event("approval_requested", step, action=action))
        return await self._save(walk, "waiting_approval")

    async def _finish(self, walk: _Walk) -> RunReport:
        await walk.emit(_event("finished", text="the workflow reached its end"))
        return await self._save(walk, "finished")

    async def _stop(self, walk: _Walk, why: str) -> RunReport:
        await walk.emit(_event("stopped", text=why))
        return await self._save(walk, "stopped")

    async def _save(self, walk: _Walk, state: str) -> RunReport:
        events = [e.model_dump(mode="json") for e in walk.events]
        done = state in ("finished", "stopped")

        def save(session: Session) -> None:
            run = session.get(ExecutorRun, walk.run_id)
            assert run is not None
            run.steps = {**run.steps, "events": events}
            run.state = state
            run.finished_at = _now() if done else None

        await self._records.transaction(save)
        return await self._report(walk.run_id, state, walk.events)

    async def _report(self, run_id: int, state: str, events: Sequence[RunEvent]) -> RunReport:
        def pending(session: Session) -> list[Approval]:
            query = select(Approval).where(Approval.run_id == run_id, Approval.decision == "pending")
            return list(session.scalars(query.order_by(Approval.id)))

        rows = await self._records.transaction(pending)
        waiting = tuple((a.step_id, Action.model_validate(a.action)) for a in rows)
        return RunReport(run_id=run_id, state=state, events=tuple(events), pending=waiting)


def _stretch(workflow: Workflow, start: str, tools: Mapping[str, ToolSpec]) -> list[Step]:
    """The steps from ``start`` along ``next`` up to and including the first decision, terminal or
    write step (a write must wait; what follows it may depend on it). Their reads are independent."""
    by_id = {s.id: s for s in workflow.steps}
    stretch: list[Step] = []
    step: Step | None = by_id[start]
    while step is not None and step not in stretch:
        stretch.append(step)
        writes = step.action is not None and tools[step.action.tool].mode == "write"
        if step.type != "process" or writes or step.next is None:
            break
        step = by_id[step.next]
    return stretch


def _size(result: ToolResult) -> int:
    """Output a call collected: the bytes it read where it says, else its summary."""
    return int((result.data or {}).get("bytes", len(result.summary)))


def _after_write(step: Step) -> str | None:
    """Where the walk goes once a step's write is done: a decision's yes, a process step's next."""
    if step.type == "decision" and step.branches is not None:
        return step.branches.yes
    return step.next


def _added(session: Session, row: ExecutorRun) -> ExecutorRun:
    session.add(row)
    session.flush()
    return row


def _claim(session: Session, run_id: int, step_id: str, channel: str, user: str, decision: str) -> str | None:
    """Compare-and-set the pending approval to ``decision``; the reason it cannot be, or None.

    The UPDATE is the transaction's first statement, so that concurrent claims queue on the write
    lock and the later one finds the row already decided (on SQLite and PostgreSQL alike)."""
    own_channel = select(ExecutorRun.id).where(ExecutorRun.id == run_id, ExecutorRun.channel == channel)
    claimed = session.execute(
        update(Approval)
        .where(Approval.run_id.in_(own_channel), Approval.step_id == step_id, Approval.decision == "pending")
        .values(decision=decision, decided_by=user, decided_at=_now())
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount == 1:  # type: ignore[attr-defined]
        run = session.get(ExecutorRun, run_id)
        assert run is not None
        run.state = "running"
        return None
    run = session.get(ExecutorRun, run_id)
    if run is None or run.channel != channel:
        return "this run's writes can only be approved in the channel where it runs"
    row = session.scalars(select(Approval).where(Approval.run_id == run_id, Approval.step_id == step_id)).first()
    if row is None:
        return f"no write is waiting for an approval at step {step_id}"
    return f"already {row.decision} by <@{row.decided_by}>; nothing was run again"


def _record_write(session: Session, run_id: int, step_id: str, result: ToolResult) -> None:
    row = session.scalars(select(Approval).where(Approval.run_id == run_id, Approval.step_id == step_id)).one()
    row.output, row.outcome = result.summary, result.status


def _audit(run_id: int, step: Step, result: ToolResult | None) -> dict[str, Any]:
    assert step.action is not None
    args = step.action.args
    command = " ".join(args["argv"]) if "argv" in args else f"{step.action.tool} {args.get('name', '')}".strip()
    detail: dict[str, Any] = {
        "run_id": run_id,
        "step_id": step.id,
        "tool": step.action.tool,
        "command": redact(command),
    }
    if result is not None:
        detail |= {"output": result.summary, "outcome": result.status, "duration_ms": result.duration_ms}
    return detail
