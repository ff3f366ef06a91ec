"""Workflow checks in Slack: the card's **Run checks** button, **Approve / Reject** on write steps,
and the **Resolved / Not resolved** outcome buttons.

A translation layer only: a click becomes an executor call, the executor's events become one
progress message in the thread (edited as they happen), and its final state a message with the
buttons it calls for. Who may approve, and whether a click still counts, is the executor's
decision. Runs of answers to alerts start on their own in the channels that opt in
(``tools.auto_check_channels``) through ``auto_run``.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.executor import Executor, Outcome, RunReport
from bot.slack_api import escaped
from bot.threads import ThreadService
from core.errors import PlanError
from core.settings import ToolSettings
from core.types import Action, Answer, Retrieval, RunEvent
from generation.rendering import RUN_CHECKS
from trainer.store import ExecutorRun, Interaction, RecordStore

log = logging.getLogger(__name__)

APPROVE = "checks_approve"
REJECT = "checks_reject"
RESOLVED = "checks_resolved"
NOT_RESOLVED = "checks_not_resolved"
MAX_PROGRESS = 3500  # characters of a progress message; the oldest lines give way
MAX_SUMMARY = 400  # characters of one tool output in the thread


def _call(action: Action) -> str:
    args = action.args
    shown = " ".join(args["argv"]) if "argv" in args else args.get("query") or args.get("url") or args.get("name", "")
    return f"{action.tool} `{escaped(str(shown))[:300]}`"


def event_line(event: RunEvent) -> str | None:
    """One event as a line of Slack mrkdwn, or None for events the thread does not need."""
    step = f"*{escaped(event.step_id or '')}*"
    text = escaped(event.text)[:300]
    match event.kind:
        case "probe" if event.action is not None and event.result is not None:
            output = escaped(event.result.summary)[:MAX_SUMMARY].replace("```", "'''")
            return f"▸ {step} {text}\n     {_call(event.action)} → *{event.result.status}*\n```{output or ' '}```"
        case "manual":
            return f"▹ {step} {text} _(by hand)_"
        case "decision":
            return f"◆ {step} → *{event.branch}* ({escaped(event.reason)[:300]})"
        case "undecided":
            return f"◆ {step} → *undecided*: {escaped(event.reason)[:300]}"
        case "approval_requested" if event.action is not None:
            return f"✋ {step} waits for an approval: {_call(event.action)}"
        case "approved" | "rejected":
            return f"{'✅' if event.kind == 'approved' else '✖'} {step} {event.kind} by <@{event.user}>"
        case "write" if event.action is not None and event.result is not None:
            output = escaped(event.result.summary)[:MAX_SUMMARY].replace("```", "'''")
            return f"▸ {step} {_call(event.action)} → *{event.result.status}*\n```{output or ' '}```"
        case "finished":
            return "■ the workflow reached its end"
        case "stopped":
            return f"■ stopped: {text}"
    return None


def state_blocks(report: RunReport, approvers: tuple[str, ...]) -> list[dict[str, Any]]:
    """The run's state: Approve/Reject for each write waiting, else the outcome buttons."""
    blocks: list[dict[str, Any]] = []
    for step_id, action in report.pending:
        who = ", ".join(f"<@{u}>" for u in approvers) or "nobody is configured (tools.approvers)"
        text = f"✋ *{escaped(step_id)}* changes the system: {_call(action)}\nApprovers here: {who}"
        value = f"{report.run_id}|{step_id}"
        blocks += [
            {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}},
            {
                "type": "actions",
                "elements": [_button("Approve", APPROVE, value, "primary"), _button("Reject", REJECT, value, "danger")],
            },
        ]
    if not report.pending:
        state = "finished" if report.state == "finished" else "stopped"
        blocks += [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"Checks {state}. Did this resolve the incident?"}},
            {
                "type": "actions",
                "elements": [
                    _button("Resolved", RESOLVED, str(report.run_id), "primary"),
                    _button("Not resolved", NOT_RESOLVED, str(report.run_id)),
                ],
            },
        ]
    return blocks


def _button(text: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    button = {"type": "button", "text": {"type": "plain_text", "text": text}, "action_id": action_id, "value": value}
    return button | ({"style": style} if style else {})


class _Progress:
    """One thread message that grows with the run's events (posted at the first line)."""

    def __init__(self, slack: ThreadService, channel: str, thread_ts: str | None, header: str) -> None:
        self._slack, self._channel, self._thread = slack, channel, thread_ts
        self._lines = [header]
        self._ts: str | None = None

    async def add(self, event: RunEvent) -> None:
        line = event_line(event)
        if line is None:
            return
        self._lines.append(line)
        text = "\n".join(self._lines)
        while len(text) > MAX_PROGRESS and len(self._lines) > 2:
            del self._lines[1]
            text = "\n".join([self._lines[0], "…", *self._lines[1:]])
        if self._ts is None:
            self._ts = await self._slack.post(self._channel, self._thread, text)
        else:
            await self._slack.update(self._channel, self._ts, text)


class SlackChecks:
    """The check buttons, registered on ``app``; messages go through the thread service."""

    def __init__(
        self, app: AsyncApp, slack: ThreadService, executor: Executor, records: RecordStore, cfg: ToolSettings
    ) -> None:
        self._app = app
        self._slack = slack
        self._executor = executor
        self._records = records
        self._cfg = cfg

    def register(self) -> None:
        app = self._app
        app.action(RUN_CHECKS)(self._on_run_checks)
        app.action(APPROVE)(self._on_approval)
        app.action(REJECT)(self._on_approval)
        app.action(RESOLVED)(self._on_outcome)
        app.action(NOT_RESOLVED)(self._on_outcome)

    async def run_for(self, interaction: Interaction, user: str) -> RunReport | None:
        """Run the checks of a recorded answer, reporting in its thread; None when it has no workflow."""
        answer = Answer.model_validate(interaction.answer)
        if answer.workflow is None or not interaction.channel:
            return None
        channel, thread = interaction.channel, interaction.thread_ts
        context = (interaction.context or {}).get("retrieval")
        who = "an alert" if user == "auto" else f"<@{user}>"
        progress = _Progress(
            self._slack, channel, thread, f":mag: Checks of *{escaped(answer.workflow.title)}*, for {who}"
        )
        try:
            report = await self._executor.run(
                answer.workflow,
                query=interaction.query,
                user=user,
                interaction_id=interaction.id,
                channel=channel,
                thread_ts=thread,
                retrieval=Retrieval.model_validate(context) if context else None,
                known=(interaction.context or {}).get("known"),
                on_event=progress.add,
            )
        except PlanError as exc:
            await self._slack.post(channel, thread, f":warning: These checks cannot run: {escaped(str(exc))[:500]}")
            return None
        await self._post_state(report, channel, thread)
        return report

    async def auto_run(self, interaction: Interaction) -> RunReport | None:
        """Run an alert answer's checks when its channel opted in (read steps only run; writes wait)."""
        if interaction.origin != "alert" or interaction.channel not in self._cfg.auto_check_channels:
            return None
        return await self.run_for(interaction, "auto")

    async def _on_run_checks(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        value = str(body["actions"][0].get("value", "")).split("|", 1)[0]
        interaction = await self._records.interaction(int(value)) if value.isdigit() else None
        if interaction is not None:
            await self.run_for(interaction, body["user"]["id"])

    async def _on_approval(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        action = body["actions"][0]
        run_id, _, step_id = str(action.get("value", "")).partition("|")
        run = await self._records.transaction(lambda s: s.get(ExecutorRun, int(run_id))) if run_id.isdigit() else None
        user, channel = body["user"]["id"], (body.get("channel") or {}).get("id", "")
        if run is None or not channel:
            return
        progress = _Progress(self._slack, channel, run.thread_ts, f":gear: Checks of *{escaped(run.incident)}*, go on")
        approve = action["action_id"] == APPROVE
        answer = await self._executor.decide(
            run.id, step_id, user=user, approve=approve, channel=channel, on_event=progress.add
        )
        if not answer.accepted or answer.report is None:
            await self._ephemeral(channel, user, answer.message)
            return
        if (message_ts := (body.get("message") or {}).get("ts")) is not None:  # the buttons are spent
            await self._slack.update(channel, message_ts, f"✋ *{escaped(step_id)}*: {escaped(answer.message)}", [])
        await self._post_state(answer.report, channel, run.thread_ts)

    async def _on_outcome(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        action = body["actions"][0]
        value, user = str(action.get("value", "")), body["user"]["id"]
        if not value.isdigit():
            return
        outcome: Outcome = "resolved" if action["action_id"] == RESOLVED else "not_resolved"
        try:
            await self._executor.mark_outcome(int(value), outcome, user)
        except KeyError:  # a button of a run that is gone (or a forged value): nothing to mark
            return
        channel, message_ts = (body.get("channel") or {}).get("id"), (body.get("message") or {}).get("ts")
        if channel and message_ts:
            text = (
                f"Checks done. Marked *{outcome.replace('_', ' ')}* by <@{user}>; thank you, it is kept for training."
            )
            await self._slack.update(channel, message_ts, text, [])

    async def _post_state(self, report: RunReport, channel: str, thread: str | None) -> None:
        fallback = {"waiting_approval": "A write step waits for an approval"}.get(report.state, "Checks done")
        await self._slack.post(channel, thread, fallback, state_blocks(report, self._cfg.approvers.get(channel, ())))

    async def _ephemeral(self, channel: str, user: str, text: str) -> None:
        await self._slack.api.ephemeral(channel, user, text)  # a refusal is logged there; the click changed nothing
