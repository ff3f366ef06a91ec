"""Workflows as people read them: Markdown, Mermaid, Slack Block Kit, Graphviz DOT and PNG.

Everything here is a pure function of domain types except ``render_png``, which runs Graphviz ``dot``
(blocking: call it through ``asyncio.to_thread`` from the event loop). Nothing here talks to Slack.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import textwrap
from collections.abc import Callable, Iterable
from typing import Any

from core.errors import ConfigError
from core.types import Answer, Step, Workflow
from generation.actions import shown

FEEDBACK_UP = "feedback_up"
FEEDBACK_DOWN = "feedback_down"
EDIT_WORKFLOW = "edit_workflow"
RUN_CHECKS = "run_checks"
ESCALATE = "escalate"
FLAG_STEP = "flag_step"
STEP_FLAGS = {
    "wrong": "This step is wrong",
    "incomplete": "Something is missing here",
    "dangerous": "This is dangerous",
}

# Slack's Block Kit limits (https://docs.slack.dev/reference/block-kit).
MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_HEADER = 150
MAX_BUTTON = 75

DocUrl = Callable[[str], str | None]
"""Maps a doc id to a link for people, or None where it has none."""

_MARK = {"process": "▸", "decision": "◆", "terminal": "■"}
_MERMAID_SHAPE = {"process": ('["', '"]'), "decision": ('{"', '"}'), "terminal": ('(["', '"])')}
_DOT_SHAPE = {"process": "shape=box", "decision": "shape=diamond", "terminal": 'shape=box, style="rounded"'}
# '#' first: Mermaid's entity syntax is '#name;', so a literal '#' must not start one.
_MERMAID_ESCAPES = {"#": "#35;", '"': "#quot;", "&": "#amp;", "<": "#lt;", ">": "#gt;", "|": "#124;", "`": "#96;"}
_MERMAID_ESCAPES |= {c: f"#{ord(c)};" for c in "[]{}()"}
_SLACK_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
# Keywords that end or reconfigure a flowchart when used as a node id ("end" is the classic).
_MERMAID_WORDS = {"end", "graph", "flowchart", "subgraph", "direction", "style", "class", "classdef", "linkstyle"}
_MERMAID_WORDS |= {"click", "call", "href", "default"}
_MD_LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]*)\)")
_SAFE_ID = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_MERMAID_LABEL = 120
_DOT_WRAP, _DOT_LABEL = 40, 240


def _one_line(text: str) -> str:
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _escaped(text: str, table: dict[str, str], limit: int) -> str:
    """``text`` escaped by ``table``, cut with an ellipsis so the escaped form fits ``limit``."""
    pieces = [table.get(ch, ch) for ch in text]
    if sum(map(len, pieces)) <= limit:
        return "".join(pieces)
    out, size = [], 0
    for piece in pieces:  # never cut inside an escape sequence
        if size + len(piece) > limit - 1:
            break
        out.append(piece)
        size += len(piece)
    return "".join(out) + "…"


def _fit(parts: Iterable[str], limit: int, sep: str = ", ", more: str = "+{n} more") -> str:
    """``parts`` joined while they fit ``limit``, then a note of how many were left out."""
    parts = list(parts)
    for keep in range(len(parts), -1, -1):
        tail = [more.format(n=len(parts) - keep)] if keep < len(parts) else []
        text = sep.join(parts[:keep] + tail)
        if len(text) <= limit:
            return text
    return _clip(more.format(n=len(parts)), limit)


def _step_line(step: Step) -> str:
    cites = ", ".join(dict.fromkeys(f"`{c.doc_id}`" for c in step.citations))
    line = f"{_MARK[step.type]} **{step.id}** {step.text}"
    if step.branches:
        line += f" — yes → {step.branches.yes}, no → {step.branches.no}"
    elif step.next:
        line += f" → {step.next}"
    if step.action is not None:
        line += f"  \n  `{shown(step.action)}`"
    line += "".join(f"  \n  ⚠ _{note}_" for note in step.notes)
    return line + (f"  \n  _source: {cites}_" if cites else "")


def render_markdown(answer: Answer) -> str:
    """The answer as Markdown: the workflow with sources per step, or what was searched."""
    if answer.abstained or answer.workflow is None:
        searched = "\n".join(f"- `{doc}`" for doc in answer.searched) or "- (nothing)"
        return (
            f"**No runbook matches:** {answer.reason}.\n\nNearest documents searched:\n{searched}\n\n"
            "Escalate to the owning team or the incident commander."
        )
    steps = "\n".join(f"{n}. {_step_line(s)}" for n, s in enumerate(answer.workflow.steps, 1))
    see_also = "".join(f"\n- {ref}" for ref in answer.workflow.see_also)
    see_also = f"\n\n**See also**{see_also}" if see_also else ""
    return f"### {answer.workflow.title}\n\n{steps}{see_also}\n\n_{answer.planner} planner, {answer.latency_ms:.0f} ms_"


def _node_ids(workflow: Workflow) -> dict[str, str]:
    """A Mermaid-safe, unique node id for every step id the workflow names."""
    named = [s.id for s in workflow.steps] + [t for s in workflow.steps for t, _ in _edges(s)]
    ids: dict[str, str] = {}
    for step_id in dict.fromkeys(named):
        safe = step_id if _SAFE_ID.fullmatch(step_id) and step_id.lower() not in _MERMAID_WORDS else None
        base = safe or "n_" + re.sub(r"[^A-Za-z0-9_]", "_", step_id)
        node, n = base, 1
        while node in ids.values():
            n += 1
            node = f"{base}_{n}"
        ids[step_id] = node
    return ids


def _edges(step: Step) -> list[tuple[str, str | None]]:
    """(target, label) for every edge leaving ``step``."""
    if step.branches:
        return [(step.branches.yes, "yes"), (step.branches.no, "no")]
    return [(step.next, None)] if step.next else []


def render_mermaid(workflow: Workflow) -> str:
    """The workflow as a Mermaid ``flowchart TD``: rectangles, rhombi for decisions, stadiums for ends."""
    ids = _node_ids(workflow)
    lines = ["flowchart TD"]
    for step in workflow.steps:
        left, right = _MERMAID_SHAPE[step.type]
        text = _escaped(_clip(_one_line(step.text), _MERMAID_LABEL), _MERMAID_ESCAPES, 10 * _MERMAID_LABEL)
        lines.append(f"    {ids[step.id]}{left}{text}{right}")
    for step in workflow.steps:
        for target, label in _edges(step):
            arrow = f"-->|{label}|" if label else "-->"
            lines.append(f"    {ids[step.id]} {arrow} {ids[target]}")
    return "\n".join(lines) + "\n"


def _mrkdwn(text: str, limit: int = MAX_SECTION) -> str:
    return _escaped(text, _SLACK_ESCAPES, limit)


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, MAX_SECTION)}}


def _button(text: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    button = {"type": "button", "text": {"type": "plain_text", "text": _clip(text, MAX_BUTTON), "emoji": True}}
    return button | {"action_id": action_id, "value": value} | ({"style": style} if style else {})


def _flag_menu(step: Step, answer_id: str) -> dict[str, Any]:
    """The per-step overflow menu; an option's value carries the answer, the step and the flag."""
    options = [
        {"text": {"type": "plain_text", "text": label}, "value": f"{answer_id}|{flag}|{step.id}"[:150]}
        for flag, label in STEP_FLAGS.items()
    ]
    return {"type": "overflow", "action_id": FLAG_STEP, "options": options}


def _header(text: str) -> dict[str, Any]:
    text = _clip(_one_line(text), MAX_HEADER) or "Troubleshooting workflow"  # Slack refuses an empty header
    return {"type": "header", "text": {"type": "plain_text", "text": text}}


def _context(answer: Answer) -> dict[str, Any]:
    # Confidence only when the Scorer gave one: a made-up number would mislead the on-call engineer.
    facts = [f"{answer.planner} planner", answer.model, f"{answer.latency_ms:.0f} ms"]
    if answer.confidence is not None:
        facts.append(f"confidence {answer.confidence:.0%}")
    facts += [f"⚠ degraded: {note}" for note in answer.degraded]
    text = _fit((_mrkdwn(f, 500) for f in facts if f), MAX_SECTION, " · ")
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def _doc_link(doc_id: str, doc_url: DocUrl | None) -> str:
    url = doc_url(doc_id) if doc_url else None
    label = _mrkdwn(doc_id, 300)
    if not url:
        return f"`{label}`"
    url = url.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E")
    return f"<{url}|{label}>"


def _step_text(step: Step, doc_url: DocUrl | None) -> str:
    """One step in mrkdwn: marker, id, text, where it leads, and its sources; at most MAX_SECTION chars."""
    head = f"{_MARK[step.type]} *{_mrkdwn(step.id, 100)}* "
    if step.branches:
        tail = f" — yes → {_mrkdwn(step.branches.yes, 100)} / no → {_mrkdwn(step.branches.no, 100)}"
    else:
        tail = f" → {_mrkdwn(step.next, 100)}" if step.next else ""
    docs = dict.fromkeys(c.doc_id for c in step.citations)
    sources = f"\n_sources: {_fit((_doc_link(d, doc_url) for d in docs), 1000)}_" if docs else ""
    notes = "".join(f"\n:warning: _{_mrkdwn(note, 400)}_" for note in step.notes[:3])
    if step.action is not None:
        notes = f"\n`{_mrkdwn(shown(step.action), 600)}`" + notes
    room = MAX_SECTION - len(head + tail + sources + notes)
    return head + _mrkdwn(step.text, room) + tail + notes + sources


def _abstention_blocks(answer: Answer, doc_url: DocUrl | None, answer_id: str) -> list[dict[str, Any]]:
    searched = _fit((f"• {_doc_link(d, doc_url)}" for d in answer.searched), 2900, "\n", "…and {n} more")
    return [
        _header("No runbook matches"),
        _section(
            f"{_mrkdwn(answer.reason or 'nothing relevant was found', 2800)}\n"
            "Escalate to the owning team or the incident commander."
        ),
        _section(f"*Nearest documents searched:*\n{searched or '(nothing)'}"),
        _context(answer),
        {"type": "actions", "elements": [_button("Escalate", ESCALATE, answer_id, "danger")]},
    ]


def render_slack_blocks(answer: Answer, *, doc_url: DocUrl | None = None, answer_id: str = "") -> list[dict[str, Any]]:
    """The answer as a Block Kit card within Slack's limits (at most ``MAX_BLOCKS`` blocks).

    ``answer_id`` (the recorded interaction) is the value of every button and step menu, so feedback
    finds the answer it judges; without one the card has no per-step menus.
    """
    if answer.abstained or answer.workflow is None:
        return _abstention_blocks(answer, doc_url, answer_id)
    steps = answer.workflow.steps
    room = MAX_BLOCKS - 3  # header, context and actions
    shown = steps if len(steps) <= room else steps[: room - 1]
    sections = [_section(_step_text(s, doc_url)) for s in shown]
    if answer_id:
        sections = [sec | {"accessory": _flag_menu(s, answer_id)} for sec, s in zip(sections, shown, strict=True)]
    if rest := steps[len(shown) :]:
        lines = (f"{_MARK[s.type]} *{_mrkdwn(s.id, 100)}* {_mrkdwn(_one_line(s.text), 300)}" for s in rest)
        sections.append(_section(_fit(lines, MAX_SECTION, "\n", "…and {n} more steps")))
    if answer.workflow.see_also and len(sections) < room:
        refs = _fit(
            (f"• {_mrkdwn(_link_of(ref), 400)}" for ref in answer.workflow.see_also), 2900, "\n", "…and {n} more"
        )
        sections.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"*See also:*\n{refs}"}]})
    buttons = [_button("👍", FEEDBACK_UP, answer_id), _button("👎", FEEDBACK_DOWN, answer_id)]
    buttons += [_button("Edit", EDIT_WORKFLOW, answer_id), _button("Run checks", RUN_CHECKS, answer_id)]
    return [_header(answer.workflow.title), _context(answer), *sections, {"type": "actions", "elements": buttons}]


def _link_of(reference: str) -> str:
    """A see-also entry (Markdown) as plain text with its first URL, for mrkdwn."""
    match = _MD_LINK.search(reference)
    return _MD_LINK.sub(r"\1", reference) + (f" ({match.group(2)})" if match else "")


def fallback_text(answer: Answer) -> str:
    """The message's ``text``: what a notification shows in place of the blocks."""
    if answer.abstained or answer.workflow is None:
        return _mrkdwn(f"No runbook matches: {_one_line(answer.reason or answer.query)}", MAX_SECTION)
    steps = answer.workflow.steps
    first = f"; first: {_one_line(steps[0].text)}" if steps else ""
    return _mrkdwn(f"{_one_line(answer.workflow.title)}: {len(steps)} steps{first}", MAX_SECTION)


def _dot_str(text: str) -> str:
    """A quoted DOT string; backslashes are doubled because DOT reads escapes such as ``\\N`` in labels."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot_label(text: str) -> str:
    lines = textwrap.wrap(_clip(_one_line(text), _DOT_LABEL), _DOT_WRAP, break_on_hyphens=False) or [""]
    return "\\n".join(_dot_str(line)[1:-1] for line in lines)


def render_dot(workflow: Workflow) -> str:
    """The workflow as Graphviz DOT: boxes, diamonds for decisions, rounded boxes for ends."""
    lines = [
        "digraph workflow {",
        f'    graph [label="{_dot_label(workflow.title)}", labelloc=t, fontname="Helvetica"];',
        '    node [fontname="Helvetica", fontsize=11];',
        '    edge [fontname="Helvetica", fontsize=10];',
    ]
    for step in workflow.steps:
        lines.append(f'    {_dot_str(step.id)} [{_DOT_SHAPE[step.type]}, label="{_dot_label(step.text)}"];')
    for step in workflow.steps:
        for target, label in _edges(step):
            attrs = f' [label="{label}"]' if label else ""
            lines.append(f"    {_dot_str(step.id)} -> {_dot_str(target)}{attrs};")
    return "\n".join([*lines, "}"]) + "\n"


def render_png(workflow: Workflow) -> bytes:
    """The flowchart as a PNG, drawn by Graphviz ``dot`` (blocking, 10 s at most).

    Raises ``ConfigError`` when Graphviz is not installed, and ``RuntimeError`` when ``dot`` fails or
    times out: the DOT text is ours, so a failure is a bug, not the world being down.
    """
    dot = shutil.which("dot")
    if dot is None:
        raise ConfigError("graphviz is not installed: apt-get install graphviz")
    try:
        done = subprocess.run(
            [dot, "-Tpng"], input=render_dot(workflow).encode(), capture_output=True, timeout=10, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"graphviz took over {exc.timeout:.0f} s to draw {workflow.title!r}") from exc
    if done.returncode != 0:
        raise RuntimeError(f"graphviz failed ({done.returncode}): {done.stderr.decode(errors='replace')[:500]}")
    return done.stdout
