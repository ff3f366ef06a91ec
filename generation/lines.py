"""The Planner's numbered-line reply: a format a sub-1B model writes validly, held by a GBNF grammar.

One step a line, numbered from 1, each ending with the numbers of the sources it comes from::

    1. Check the pod status with kubectl get pods [1]
    2? Is the pod in CrashLoopBackOff? yes: 3 no: 4 [1]
    3. Read the previous container's logs [2]
    4= Escalate to the owning team [2]

``.`` is a process step (it leads to the next line), ``?`` a yes/no decision, ``=`` a terminal step —
the marks ``generation.editing`` reads. The grammar holds the structure (numbering, marks, branches,
source tags, a terminal last line) and leaves the step's words free. Links the grammar cannot check
(a branch to a step that does not exist, to itself or backwards) are repaired deterministically, and
the repairs counted, before the workflow is validated; so is a terminal line no decision leads to that would cut off the
lines after it. Pure functions; no model here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from core.types import Branches, Citation, Passage, Step, Workflow

MAX_LINES = 12  # as the JSON schema: the extractive planner writes up to ten steps and two terminals
MAX_LINE_TEXT = 110  # the dev split's gold steps: median 54 characters, 97th percentile 96
_LINE = re.compile(r"^\s*(\d+)\s*([.?=])\s*(.*?)\s*$")
_TAG = re.compile(r"\s*\[(\d+)\]")
_BRANCHES = re.compile(r"\s*\byes\s*:\s*(\d+)\s*,?\s*\bno\s*:\s*(\d+)\s*$", re.IGNORECASE)
_MARK = {"process": ".", "decision": "?", "terminal": "="}


@functools.lru_cache(maxsize=32)
def lines_grammar(n_sources: int, max_lines: int = MAX_LINES) -> str:
    """GBNF for a reply of 1..``max_lines`` numbered lines citing sources 1..``n_sources``, ending with a
    terminal line. Numbering is held by position; the words of a step are free (no newline, no brackets)."""
    if n_sources < 1 or max_lines < 1:
        raise ValueError("a lines grammar needs at least one source and one line")
    rules = ["root ::= s1"]
    for i in range(1, max_lines + 1):
        rest = f"( proc s{i + 1} | dec s{i + 1} | term s{i + 1}? )" if i < max_lines else "term"
        rules.append(f's{i} ::= "{i}" {rest}')
    sources = " | ".join(f'"{n}"' for n in range(1, n_sources + 1))
    rules += [
        'proc ::= ". " text tags "\\n"',
        'dec ::= "? " question "? yes: " num " no: " num tags "\\n"',
        'term ::= "= " text tags "\\n"',
        f"text ::= [^\\n\\[\\]?] [^\\n\\[\\]]{{1,{MAX_LINE_TEXT}}}",
        f"question ::= [^\\n\\[\\]?]{{2,{MAX_LINE_TEXT}}}",
        "num ::= [1-9] [0-9]?",
        'tags ::= " [" src "]" ( " [" src "]" )?',
        f"src ::= {sources}",
    ]
    return "\n".join(rules) + "\n"


@dataclass(frozen=True)
class LinesReply:
    """A reply read into a workflow, with what had to be repaired on the way (0 = none)."""

    workflow: Workflow
    links_repaired: int
    lines_dropped: int

    @property
    def repaired(self) -> bool:
        return bool(self.links_repaired or self.lines_dropped)


@dataclass
class _Line:
    number: str
    mark: str
    text: str
    tags: list[int]
    yes: str | None = None
    no: str | None = None


def read_lines(raw: str, title: str, shown: Sequence[Passage]) -> LinesReply:
    """The workflow a lines reply describes, its links repaired; ``shown`` are the prompt's sources [1]…
    Lines that are not steps are dropped, and so is a last line without its newline (a reply cut off by
    the token limit). An empty workflow when no line is a step (validation refuses it)."""
    parsed: list[_Line] = []
    rows = raw.split("\n")
    dropped = int(bool(rows[-1].strip()))  # no newline after it: cut off by the token limit
    for line in rows[:-1]:
        if not line.strip():
            continue
        if (line_ := _parse(line)) is None:
            dropped += 1
        else:
            parsed.append(line_)
    seen: set[str] = set()
    unique = []
    for line_ in parsed:  # a number written twice: the first line keeps it
        if line_.number in seen:
            dropped += 1
            continue
        seen.add(line_.number)
        unique.append(line_)
    opened = _open_dead_ends(unique)
    steps, links = _link(unique)
    links += opened
    steps, unreachable = _reachable_only(steps)
    cited = [_with_citations(step, line_.tags, shown) for step, line_ in steps]
    return LinesReply(Workflow(title=title, steps=tuple(cited)), links, dropped + unreachable)


def _parse(line: str) -> _Line | None:
    match = _LINE.match(line)
    if match is None:
        return None
    number, mark, body = match.groups()
    tags = [int(t) for t in _TAG.findall(body)]
    body = _TAG.sub("", body).strip()
    yes = no = None
    if mark == "?":
        branches = _BRANCHES.search(body)
        if branches is None:
            mark = "."  # a question without branches is read as a check
        else:
            yes, no = branches.groups()
            body = body[: branches.start()].strip()
    if not body:
        return None
    return _Line(str(int(number)), mark, body, tags, yes, no)


def _open_dead_ends(lines: list[_Line]) -> int:
    """A terminal line before the last that no decision names would cut off every line after it: it goes
    on to the next line instead (a process step). Returns how many were opened."""
    named = {target for line in lines if line.mark == "?" for target in (line.yes, line.no)}
    opened = 0
    for line in lines[:-1]:
        if line.mark == "=" and line.number not in named:
            line.mark, opened = ".", opened + 1
    return opened


def _link(lines: list[_Line]) -> tuple[list[tuple[Step, _Line]], int]:
    """Steps with ids "1".. by position. A branch to an unknown, earlier or own step is repaired: "yes" goes
    to the next line, "no" to the first terminal line after the decision that "yes" does not reach, else
    the next line; a decision on the last line becomes a terminal, and so does a process step there."""
    position = {line.number: str(i) for i, line in enumerate(lines, 1)}
    terminals = [str(i) for i, line in enumerate(lines, 1) if line.mark == "="]
    steps: list[tuple[Step, _Line]] = []
    repaired = 0
    for i, line in enumerate(lines, 1):
        following = str(i + 1) if i < len(lines) else None
        kind = {".": "process", "?": "decision", "=": "terminal"}[line.mark]
        if kind == "process" and following is None:
            kind, repaired = "terminal", repaired + 1
        if kind == "decision":
            targets: list[str | None] = []
            for written in (line.yes, line.no):
                target = position.get(written or "")
                if target is None or int(target) <= i:
                    later = [t for t in terminals if int(t) > i and t not in targets] if targets else []
                    target, repaired = (later[0] if later else following), repaired + 1
                targets.append(target)
            if None in targets:
                step = Step(id=str(i), type="terminal", text=line.text)
            else:
                branches = Branches(yes=str(targets[0]), no=str(targets[1]))
                step = Step(id=str(i), type="decision", text=line.text, branches=branches)
        elif kind == "process":
            step = Step(id=str(i), type="process", text=line.text, next=following)
        else:
            step = Step(id=str(i), type="terminal", text=line.text)
        steps.append((step, line))
    return steps, repaired


def _reachable_only(steps: list[tuple[Step, _Line]]) -> tuple[list[tuple[Step, _Line]], int]:
    if not steps:
        return steps, 0
    by_id = {step.id: step for step, _ in steps}
    seen, todo = {steps[0][0].id}, [steps[0][0]]
    while todo:
        step = todo.pop()
        targets = [step.next] if step.next else []
        targets += [step.branches.yes, step.branches.no] if step.branches else []
        for target in targets:
            if target not in seen:
                seen.add(target)
                todo.append(by_id[target])
    kept = [(step, line) for step, line in steps if step.id in seen]
    return kept, len(steps) - len(kept)


def _with_citations(step: Step, tags: Sequence[int], shown: Sequence[Passage]) -> Step:
    cited = [shown[n - 1].chunk for n in tags if 1 <= n <= len(shown)]
    citations = tuple(dict.fromkeys(Citation(doc_id=c.doc_id, chunk_id=c.chunk_id) for c in cited))
    return step.model_copy(update={"citations": citations})


def write_lines(workflow: Workflow, shown: Sequence[Passage], max_lines: int = MAX_LINES) -> str | None:
    """``workflow`` as the Planner writes it in lines for a prompt showing ``shown`` as sources [1]…, or
    None when the format cannot hold it (more than ``max_lines`` steps, a process step that does not lead
    to the next line). A step citing no shown source cites the one whose words it shares most."""
    steps = workflow.steps
    if not steps or len(steps) > max_lines:
        return None
    position = {s.id: str(i) for i, s in enumerate(steps, 1)}
    numbers = {p.chunk.chunk_id: n for n, p in enumerate(shown, 1)}
    lines = []
    for i, step in enumerate(steps, 1):
        if step.type == "process" and position.get(step.next or "") != str(i + 1):
            return None
        tags = sorted({numbers[c.chunk_id] for c in step.citations if c.chunk_id in numbers})[:2]
        if not tags and shown:
            tags = [_closest_source(step.text, shown)]
        if not tags:
            return None
        text = _clean(step.text, question=step.type == "decision")
        if step.type == "decision" and step.branches:
            text += f" yes: {position[step.branches.yes]} no: {position[step.branches.no]}"
        lines.append(f"{i}{_MARK[step.type]} {text}" + "".join(f" [{n}]" for n in tags))
    return "\n".join(lines) + "\n"


def _clean(text: str, *, question: bool) -> str:
    """One line of at most ``MAX_LINE_TEXT`` characters without brackets; a question ends with one "?"."""
    words = " ".join(text.replace("[", "(").replace("]", ")").split())
    if question:
        words = words.replace("?", "").strip() or "Is it so"
    elif words.startswith("?"):
        words = words.lstrip("?").strip()
    if len(words) > MAX_LINE_TEXT:
        words = words[:MAX_LINE_TEXT].rsplit(" ", 1)[0]
    if len(words) < 2:
        words = words.ljust(2, ".")
    return words + "?" if question else words


def _closest_source(text: str, shown: Sequence[Passage]) -> int:
    words = set(re.findall(r"[a-z0-9]+", text.lower()))
    overlaps = [len(words & set(re.findall(r"[a-z0-9]+", p.chunk.text.lower()))) for p in shown]
    return max(range(len(shown)), key=lambda i: (overlaps[i], -i)) + 1
