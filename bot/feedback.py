"""People's judgements of answers: reactions, 👍/👎 buttons with a reason modal, Edit, step flags, escalate.

Each becomes a ``Feedback`` row (last write wins per user and answer) for training; an Edit and a
step flagged *wrong* also change the next answer for that incident at once (``bot.corrections``).
Listeners call ``ack()`` after a vote is written, so a click Slack saw acknowledged is a vote kept.
"""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.corrections import Corrections
from bot.metrics import Metrics
from bot.records import BotRecords
from bot.slack_api import SlackApi
from core.errors import PlanError
from core.settings import SlackSettings
from core.types import Answer, Workflow
from generation.editing import from_lines, to_lines
from generation.rendering import EDIT_WORKFLOW, ESCALATE, FEEDBACK_DOWN, FEEDBACK_UP, FLAG_STEP, STEP_FLAGS
from trainer.store import Interaction

DOWNVOTE_VIEW = "downvote_reason"
EDIT_VIEW = "edit_workflow"


class FeedbackListeners:
    """Records what people think of answers; ``register`` adds the buttons and modals to a Bolt app."""

    def __init__(
        self, cfg: SlackSettings, records: BotRecords, api: SlackApi, metrics: Metrics, corrections: Corrections
    ) -> None:
        self._cfg = cfg
        self._records = records
        self._api = api
        self._metrics = metrics
        self._corrections = corrections

    def register(self, app: AsyncApp) -> None:
        app.action(FEEDBACK_UP)(self._on_vote_button)
        app.action(FEEDBACK_DOWN)(self._on_vote_button)
        app.action(EDIT_WORKFLOW)(self._on_edit_button)
        app.action(FLAG_STEP)(self._on_flag)
        app.action(ESCALATE)(self._on_escalate)
        app.view(DOWNVOTE_VIEW)(self._on_downvote_reason)
        app.view(EDIT_VIEW)(self._on_edit_submitted)

    def _vote_of(self, reaction: str) -> int:
        name = reaction.split("::", 1)[0]  # "+1::skin-tone-3" is still +1
        if name in self._cfg.upvote_emoji:
            return 1
        if name in self._cfg.downvote_emoji:
            return -1
        return 0

    async def vote_by_reaction(self, event: dict[str, Any]) -> None:
        """A ``reaction_added``/``reaction_removed`` event on one of the bot's answers, as a vote."""
        item = event.get("item")
        vote = self._vote_of(str(event.get("reaction", "")))
        if not isinstance(item, dict) or item.get("type") != "message" or not vote:
            return
        interaction = await self._records.interaction_at(str(item.get("channel")), str(item.get("ts")))
        if interaction is None:  # not one of the bot's answers
            return
        user = str(event.get("user", ""))
        if event["type"] == "reaction_added":
            await self._records.record_feedback(interaction.id, user, via="reaction", vote=vote)
            self._metrics.feedback.labels(kind="up" if vote > 0 else "down").inc()
            return
        current = await self._records.user_feedback(interaction.id, user)
        if current is not None and current.vote == vote:  # removing the reaction withdraws that vote only
            await self._records.record_feedback(interaction.id, user, via="reaction", vote=0)
            self._metrics.feedback.labels(kind="withdrawn").inc()

    async def _interaction_of(self, body: dict[str, Any]) -> Interaction | None:
        actions = body.get("actions") or [{}]
        value = actions[0].get("value") or actions[0].get("selected_option", {}).get("value", "")
        answer_id = str(value).split("|", 1)[0]
        return await self._records.interaction(int(answer_id)) if answer_id.isdigit() else None

    async def _on_vote_button(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        interaction = await self._interaction_of(body)
        if interaction is None:
            await ack()
            return
        up = body["actions"][0]["action_id"] == FEEDBACK_UP
        await self._records.record_feedback(interaction.id, body["user"]["id"], via="button", vote=1 if up else -1)
        await ack()
        self._metrics.feedback.labels(kind="up" if up else "down").inc()
        if not up:
            await self._api.open_view(body["trigger_id"], _downvote_view(interaction.id))

    async def _on_downvote_reason(self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        interaction_id = int(view["private_metadata"])
        values = view["state"]["values"]
        reason = (values.get("reason", {}).get("reason", {}).get("value") or "").strip()
        if reason:
            await self._records.record_feedback(interaction_id, body["user"]["id"], via="modal", reason=reason)
            self._metrics.feedback.labels(kind="reason").inc()
        await ack()

    async def _on_edit_button(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        interaction = await self._interaction_of(body)
        workflow = _workflow_of(interaction)
        if interaction is None or workflow is None:
            return
        await self._api.open_view(body["trigger_id"], _edit_view(interaction.id, workflow))

    async def _on_edit_submitted(self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        interaction = await self._records.interaction(int(view["private_metadata"]))
        original = _workflow_of(interaction)
        if interaction is None or original is None:
            await ack()
            return
        text = view["state"]["values"]["steps"]["steps"].get("value") or ""
        try:
            corrected = from_lines(text, original)
        except PlanError as exc:  # shown under the field; the modal stays open with the engineer's text
            await ack(response_action="errors", errors={"steps": str(exc)})
            return
        user = body["user"]["id"]
        await self._records.record_feedback(
            interaction.id, user, via="edit", corrected=corrected.model_dump(mode="json")
        )
        await ack()
        self._metrics.feedback.labels(kind="edit").inc()
        await self._corrections.record_edit(interaction, user, corrected)
        if interaction.channel and interaction.thread_ts:
            await self._api.post(
                interaction.channel,
                interaction.thread_ts,
                f"<@{user}> corrected this workflow; thank you. The next answer for this incident uses it, "
                "and it is kept for training.",
            )

    async def _on_flag(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        interaction = await self._interaction_of(body)
        value = body["actions"][0].get("selected_option", {}).get("value", "")
        parts = str(value).split("|", 2)
        if interaction is None or len(parts) != 3 or parts[1] not in STEP_FLAGS:
            await ack()
            return
        _, flag, step = parts
        user = body["user"]["id"]
        await self._records.record_feedback(interaction.id, user, via="flag", step_flags={step: flag})
        await ack()
        self._metrics.feedback.labels(kind="flag").inc()
        if flag == "wrong":
            await self._corrections.record_wrong_step(interaction, user, step)
        if interaction.channel:
            await self._api.ephemeral(interaction.channel, user, f"Recorded: step {step} — {STEP_FLAGS[flag]}.")

    async def _on_escalate(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        interaction = await self._interaction_of(body)
        if interaction is None or not interaction.channel:
            return
        await self._records.audit(body["user"]["id"], "escalate", {"interaction": interaction.id})
        await self._api.post(
            interaction.channel,
            interaction.thread_ts,
            f":rotating_light: <@{body['user']['id']}> is escalating: no runbook covers this. "
            "Page the owning team or the incident commander.",
        )


def _workflow_of(interaction: Interaction | None) -> Workflow | None:
    if interaction is None or interaction.abstained:
        return None
    return Answer.model_validate(interaction.answer).workflow


def _downvote_view(interaction_id: int) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": DOWNVOTE_VIEW,
        "private_metadata": str(interaction_id),
        "title": {"type": "plain_text", "text": "What was wrong?"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Skip"},
        "blocks": [
            {
                "type": "input",
                "block_id": "reason",
                "optional": True,
                "label": {"type": "plain_text", "text": "Tell us what was wrong (optional)"},
                "element": {"type": "plain_text_input", "action_id": "reason", "multiline": True, "max_length": 3000},
            }
        ],
    }


def _edit_view(interaction_id: int, workflow: Workflow) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": EDIT_VIEW,
        "private_metadata": str(interaction_id),
        "title": {"type": "plain_text", "text": "Correct the workflow"},
        "submit": {"type": "plain_text", "text": "Save"},
        "blocks": [
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": "One step a line: `3. do this` (then the next line), "
                        "`4? is it so? yes: 5 no: 6`, `7= done`.",
                    }
                ],
            },
            {
                "type": "input",
                "block_id": "steps",
                "label": {"type": "plain_text", "text": "Steps"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": "steps",
                    "multiline": True,
                    "initial_value": to_lines(workflow)[:3000],
                    "max_length": 3000,
                },
            },
        ],
    }
