from __future__ import annotations

import shutil
from typing import Any

import pytest

from core.errors import ConfigError
from core.types import Answer, Branches, Citation, Step, Workflow
from generation.rendering import (
    EDIT_WORKFLOW,
    ESCALATE,
    FEEDBACK_DOWN,
    FEEDBACK_UP,
    RUN_CHECKS,
    fallback_text,
    render_dot,
    render_markdown,
    render_mermaid,
    render_png,
    render_slack_blocks,
)

DOC = "k8s/KubeletDown.md"
HOSTILE = 'Say "hi" --> s9] | ok\nthen <script>alert(1)</script> {x} (y) #35; `z` & \\N'


def cite(doc: str = DOC) -> Citation:
    return Citation(doc_id=doc, chunk_id=f"{doc}#1")


FLOW = Workflow(
    title="KubeletDown",
    steps=(
        Step(id="s1", type="process", text="Check node status.", next="s2", citations=(cite(),)),
        Step(id="s2", type="decision", text="If you have SSH access?", branches=Branches(yes="s3", no="s4")),
        Step(id="s3", type="process", text="Read the kubelet logs.", next="s4", citations=(cite(), cite("b.md"))),
        Step(id="s4", type="terminal", text="Restart the kubelet."),
    ),
)


def answer(workflow: Workflow | None = FLOW, **fields: Any) -> Answer:
    defaults: dict[str, Any] = {"planner": "extractive", "model": "", "latency_ms": 12.4}
    return Answer(query="kubelet down", abstained=workflow is None, workflow=workflow, **(defaults | fields))


def chain(n: int, text: str = "Do the thing.") -> Workflow:
    steps = [Step(id=f"s{i}", type="process", text=text, next=f"s{i + 1}", citations=(cite(),)) for i in range(1, n)]
    return Workflow(title="Long", steps=(*steps, Step(id=f"s{n}", type="terminal", text="Done.")))


def texts(blocks: list[dict[str, Any]]) -> list[str]:
    return [b["text"]["text"] for b in blocks if b["type"] == "section"]


# Mermaid


def test_mermaid_draws_shapes_and_labelled_decision_edges() -> None:
    assert render_mermaid(FLOW) == (
        "flowchart TD\n"
        '    s1["Check node status."]\n'
        '    s2{"If you have SSH access?"}\n'
        '    s3["Read the kubelet logs."]\n'
        '    s4(["Restart the kubelet."])\n'
        "    s1 --> s2\n"
        "    s2 -->|yes| s3\n"
        "    s2 -->|no| s4\n"
        "    s3 --> s4\n"
    )


def test_mermaid_escapes_hostile_text_into_one_quoted_label() -> None:
    flow = Workflow(title="t", steps=(Step(id="s1", type="terminal", text=HOSTILE),))
    node = render_mermaid(flow).splitlines()[1]
    assert node == (
        '    s1(["Say #quot;hi#quot; --#gt; s9#93; #124; ok then #lt;script#gt;alert#40;1#41;#lt;/script#gt; '
        '#123;x#125; #40;y#41; #35;35; #96;z#96; #amp; \\N"])'
    )
    label = node.removeprefix('    s1(["').removesuffix('"])')
    assert not set(label) & set('"<>|[]{}()`\n')


def test_mermaid_cuts_long_text_with_an_ellipsis() -> None:
    flow = Workflow(title="t", steps=(Step(id="s1", type="terminal", text="word " * 100),))
    label = render_mermaid(flow).splitlines()[1]
    assert label.endswith('…"])')
    assert len(label) < 140


def test_mermaid_node_ids_are_safe_and_distinct() -> None:
    steps = (
        Step(id="a-b", type="process", text="one", next="a_b"),
        Step(id="a_b", type="process", text="two", next="end"),
        Step(id="end", type="terminal", text="three"),
    )
    lines = render_mermaid(Workflow(title="t", steps=steps)).splitlines()
    assert lines[1:] == [
        '    n_a_b["one"]',
        '    a_b["two"]',
        '    n_end(["three"])',
        "    n_a_b --> a_b",
        "    a_b --> n_end",
    ]


# Slack Block Kit


def test_slack_card_has_header_context_steps_and_buttons() -> None:
    blocks = render_slack_blocks(answer(model="llama3"), doc_url=lambda d: f"https://wiki/{d}" if d == DOC else None)
    assert [b["type"] for b in blocks] == ["header", "context", "section", "section", "section", "section", "actions"]
    assert blocks[0]["text"] == {"type": "plain_text", "text": "KubeletDown"}
    assert blocks[1]["elements"][0]["text"] == "extractive planner · llama3 · 12 ms"
    assert texts(blocks) == [
        f"▸ *s1* Check node status. → s2\n_sources: <https://wiki/{DOC}|{DOC}>_",
        "◆ *s2* If you have SSH access? — yes → s3 / no → s4",
        f"▸ *s3* Read the kubelet logs. → s4\n_sources: <https://wiki/{DOC}|{DOC}>, `b.md`_",
        "■ *s4* Restart the kubelet.",
    ]
    buttons = blocks[-1]["elements"]
    assert [b["action_id"] for b in buttons] == [FEEDBACK_UP, FEEDBACK_DOWN, EDIT_WORKFLOW, RUN_CHECKS]
    assert [b["action_id"] for b in buttons] == ["feedback_up", "feedback_down", "edit_workflow", "run_checks"]
    assert all(b["type"] == "button" and b["value"] == "" for b in buttons)


def test_slack_context_omits_a_missing_model_and_shows_degradation() -> None:
    blocks = render_slack_blocks(answer(degraded=("graph unreachable",)))
    assert blocks[1]["elements"][0]["text"] == "extractive planner · 12 ms · ⚠ degraded: graph unreachable"


def test_slack_escapes_control_characters_and_link_targets() -> None:
    flow = Workflow(title="t", steps=(Step(id="s1", type="terminal", text="a < b && c > d", citations=(cite(),)),))
    blocks = render_slack_blocks(answer(flow), doc_url=lambda d: "https://wiki/x|y>z")
    assert texts(blocks) == [f"■ *s1* a &lt; b &amp;&amp; c &gt; d\n_sources: <https://wiki/x%7Cy%3Ez|{DOC}>_"]


def test_abstention_card_gives_the_reason_what_was_searched_and_escalation() -> None:
    blocks = render_slack_blocks(answer(None, reason="nothing scored above 0.3", searched=("a.md", "b.md")))
    assert [b["type"] for b in blocks] == ["header", "section", "section", "context", "actions"]
    assert blocks[0]["text"]["text"] == "No runbook matches"
    assert texts(blocks)[0].startswith("nothing scored above 0.3\n")
    assert texts(blocks)[1] == "*Nearest documents searched:*\n• `a.md`\n• `b.md`"
    assert [b["action_id"] for b in blocks[-1]["elements"]] == [ESCALATE]


def test_sixty_steps_stay_within_fifty_blocks() -> None:
    blocks = render_slack_blocks(answer(chain(60)))
    assert len(blocks) == 50
    assert blocks[-1]["type"] == "actions"
    assert all(len(t) <= 3000 for t in texts(blocks))
    assert texts(blocks)[-1].startswith("▸ *s47* Do the thing.\n▸ *s48*")
    assert texts(blocks)[-1].endswith("■ *s60* Done.")


def test_overflow_that_does_not_fit_one_section_is_counted() -> None:
    blocks = render_slack_blocks(answer(chain(200, "x" * 2000)))
    assert len(blocks) == 50
    assert all(len(t) <= 3000 for t in texts(blocks))
    assert texts(blocks)[-1].endswith(" more steps")


def test_a_huge_step_and_title_are_cut_to_slack_limits() -> None:
    flow = Workflow(title="T" * 400, steps=(Step(id="s1", type="terminal", text="&" * 5000, citations=(cite(),)),))
    blocks = render_slack_blocks(answer(flow))
    assert len(blocks[0]["text"]["text"]) == 150
    (text,) = texts(blocks)
    assert len(text) <= 3000
    assert "&amp;…\n_sources: " in text  # cut between escapes, sources kept
    assert all(len(b["text"]["text"]) <= 75 for b in blocks[-1]["elements"])


def test_fallback_text_names_the_workflow_or_the_abstention() -> None:
    assert fallback_text(answer()) == "KubeletDown: 4 steps; first: Check node status."
    assert fallback_text(answer(None, reason="no <match>")) == "No runbook matches: no &lt;match&gt;"
    assert len(fallback_text(answer(chain(2, "y" * 5000)))) <= 3000


def test_markdown_keeps_its_shape() -> None:
    assert render_markdown(answer()) == (
        "### KubeletDown\n\n"
        f"1. ▸ **s1** Check node status. → s2  \n  _source: `{DOC}`_\n"
        "2. ◆ **s2** If you have SSH access? — yes → s3, no → s4\n"
        f"3. ▸ **s3** Read the kubelet logs. → s4  \n  _source: `{DOC}`, `b.md`_\n"
        "4. ■ **s4** Restart the kubelet.\n\n"
        "_extractive planner, 12 ms_"
    )


# Graphviz


def test_dot_escapes_quotes_and_backslashes_and_wraps_labels() -> None:
    steps = (
        Step(id='s"1', type="decision", text=HOSTILE, branches=Branches(yes="s2", no="s2")),
        Step(id="s2", type="terminal", text="word " * 20),
    )
    dot = render_dot(Workflow(title='a "b"', steps=steps))
    assert 'graph [label="a \\"b\\"", labelloc=t' in dot
    assert (
        '"s\\"1" [shape=diamond, label="Say \\"hi\\" --> s9] | ok then\\n<script>alert(1)</script> {x} (y) #35;\\n'
        '`z` & \\\\N"];'
    ) in dot
    wrapped = "\\n".join(["word word word word word word word word"] * 2 + ["word word word word"])
    assert f'"s2" [shape=box, style="rounded", label="{wrapped}"];' in dot
    assert '"s\\"1" -> "s2" [label="yes"];' in dot
    assert '"s\\"1" -> "s2" [label="no"];' in dot


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz is not installed: apt-get install graphviz")
def test_png_is_drawn_by_graphviz_even_for_hostile_text() -> None:
    hostile = Workflow(title=HOSTILE, steps=(*FLOW.steps[:3], Step(id="s4", type="terminal", text=HOSTILE)))
    for flow in (FLOW, hostile):
        assert render_png(flow).startswith(b"\x89PNG\r\n\x1a\n")


def test_png_without_graphviz_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(ConfigError, match="apt-get install graphviz"):
        render_png(FLOW)


def test_slack_context_shows_the_scorers_confidence_only_when_there_is_one() -> None:
    from core.types import Answer, Citation, Step, Workflow
    from generation.rendering import render_slack_blocks

    flow = Workflow(
        title="t",
        steps=(Step(id="s1", type="terminal", text="done", citations=(Citation(doc_id="a", chunk_id="a#0"),)),),
    )
    base = Answer(query="q", abstained=False, workflow=flow, planner="llm", model="m")
    context = lambda a: next(b for b in render_slack_blocks(a) if b["type"] == "context")["elements"][0]["text"]  # noqa: E731
    assert "confidence" not in context(base)
    assert "confidence 80%" in context(base.model_copy(update={"confidence": 0.8}))


def test_buttons_and_step_menus_carry_the_answer_id() -> None:
    from generation.rendering import FLAG_STEP, render_slack_blocks

    blocks = render_slack_blocks(answer(), answer_id="42")
    buttons = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert {b["value"] for b in buttons} == {"42"}
    menus = [b["accessory"] for b in blocks if "accessory" in b]
    assert menus and all(m["action_id"] == FLAG_STEP for m in menus)
    values = [o["value"] for o in menus[0]["options"]]
    assert [v.split("|")[:2] for v in values] == [["42", "wrong"], ["42", "incomplete"], ["42", "dangerous"]]
    assert not any("accessory" in b for b in render_slack_blocks(answer()))
