"""The extractive planner: a workflow built from the leading runbook without any LLM.

Baseline, fallback, and default where no capable model is configured. It reads the leading
runbook's procedure (for a file documenting many alerts, the section of the alert in question)
with ``core.runbooks``: checks and actions become process steps, conditions and questions become
yes/no decisions whose *yes* leads to what they guard and whose *no* skips it, notes are attached
to their step, links and past incidents become "see also", and the workflow ends in the runbook's
escalation sentence, else in its last step with "(escalate if it persists)", else in a resolved/escalate
terminal. Steps read as checklist items (no full stop). Every step cites the chunk it came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from core.runbooks import (
    Candidate,
    alert_heading,
    first_verb,
    imperative,
    is_escalation,
    read_section,
    role_of,
    sentences,
    strip_lead_in,
)
from core.types import Branches, Chunk, Citation, Retrieval, Step, Workflow

MAX_STEPS = 8
MAX_SEE_ALSO = 4
RESOLVED = "Resolved: the alert has cleared"
ESCALATE = "Escalate to the owning team if the problem persists"
PERSISTS = "escalate if it persists"
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_ABBREVIATION = re.compile(r"\b(?:etc|e\.g|i\.e|vs|approx|[A-Z])\.$")
_CODE = re.compile(r"`([^`]*)`")
_CONDITION = re.compile(
    r"^(?:if|in case|should"
    r"|(?:check|verify|determine|confirm|see|find out|figure out|establish|ask)\s+(?:whether|if))\s+",
    re.IGNORECASE,
)
_AUX = ("is", "are", "was", "were", "has", "have", "had", "can", "could", "will", "would", "should", "does",
        "do", "did", "must", "may")  # fmt: skip
# Verbs a condition's subject does ("the check returns 503", "the rates look normal"): asked with do/does.
_LEXICAL_VERBS = frozenset(
    "return show fail contain exceed grow look seem appear keep respond report list use match exist work run "
    "succeed answer increase decrease rise stay remain persist happen occur include mention point reach hit "
    "lag restart crash time sit hold serve block belong depend need see cause stop start change fill spike drop "
    "fall jump break stem indicate come originate relate affect involve require expire differ continue recover "
    "take get reference".split()
)
_SENTENCE_STARTS = frozenset("the a an this that these those it its one some any all each there your our".split())
_PRONOUN_AUX = ("are", "were", "can", "could", "will", "would", "should", "must", "may", "might")
_HEALTHY = re.compile(r"\b(?:normal(?:ly)?|healthy|fine|ok|okay|running|ready|up|available|succeed\w*|correct)\b", re.I)
_NEGATED = re.compile(r"\b(?:not|no|never|isn't|aren't|doesn't|don't|fails?|failing)\b", re.I)
# Where a condition ends and what to do begins: a comma, "then", or — unpunctuated — "you can …"/"there are …".
_CLAUSE = re.compile(
    r",\s+(?:then\s+)?|\s+then\s+|:\s+(?=[A-Z])"
    r"|\s+(?=(?:you|we)\s+(?:can|could|should|may|might|must|need|have\s+to|will)\b|there\s+(?:are|is)\b)"
    r"|(?<=\bthe case)\s+(?=[a-z])"
)
# Conditions that add nothing: the alert firing is why the engineer is here ("If this alert fires, check X");
# "if so", "if this is the case" are the last question's.
_ALERT_FIRES = re.compile(r"^(?:this|the)\s+alert\s+(?:fires|triggers|is\s+(?:firing|triggered|raised))$", re.I)
_SAME_CASE = re.compile(r"^(?:so|(?:this|that)\s+is\s+the\s+case)$", re.I)
# An escalation whose condition is only that nothing before it helped: the "if it persists" of the last step.
_UNRESOLVED = re.compile(
    r"^(?:if|when)\s+(?:you\s+(?:cannot|can't|can\s+not|are\s+unable\s+to)\s+(?:resolve|fix|solve)\b"
    r"|(?:the\s+)?(?:problem|issue|condition|error)\s+(?:still\s+)?persists\b"
    r"|(?:these|the)\s+(?:\w+\s+){0,2}steps\s+do\s+not\s+(?:fix|resolve|help)\b)"
    r"|\b(?:if|when)\s+fixing\s+the\s+\w+\s+is\s+not\s+apparent\b",
    re.IGNORECASE,
)
# Where a step's text stops and the code after it takes over.
_HANDS_OVER = re.compile(
    r"\b(?:with|run|running|using|by|via|execute)\W*$|\b(?:run|use|execute)\s+the\s+following\s+(?:command|query)\b",
    re.IGNORECASE,
)
_SHORT_CODE = 80
_FOLLOWING = re.compile(r"\bthe\s+following\s+(?:command|query)\b", re.IGNORECASE)
# An escalation whose conditions are the list after it ("Escalate to the cluster administrator if:"): as a step it
# would stop mid-sentence, so it is the note of the last step, like "if it persists".
_CUT_OFF = re.compile(r"\b(?:if|when|unless|in case)\W*$", re.IGNORECASE)
_ALTERNATIVELY = re.compile(r"^\W*alternatively\b", re.IGNORECASE)
_FIELD = re.compile(r"^\W*(?:message|summary|description)\W*:\s*", re.IGNORECASE)
_AND_THEN = re.compile(r",?\s+(?:and|then|and then)\s+(?=[a-z])")
_IF = re.compile(r"^(?:if|in case|should)\b", re.IGNORECASE)
_COLLECTING = ("such as", "like", "e.g.", "following", "for example")


def clean(text: str) -> str:
    """A step as a person would say it: links as their text, code spans unquoted, no emphasis marks,
    and, as an item of a checklist, no full stop or colon at its end."""
    text = _CODE.sub(r"\1", _LINK.sub(r"\1", text)).replace("**", "")
    text = " ".join(text.split()).rstrip(":")
    if text.endswith(".") and not text.endswith("..") and not _ABBREVIATION.search(text):
        text = text[:-1]
    return text[:1].upper() + text[1:]


def as_question(condition: str) -> str:
    """A condition as a yes/no question: "the API is reachable" → "Is the API reachable?"."""
    words = condition.rstrip(" .?!:;").split()
    if not words:
        return condition
    if words[0].lower() in _AUX:
        return _sentence(words) + "?"
    if words[0].lower() in ("you", "we", "they") and len(words) > 1 and words[1].lower() in ("cannot", "can't"):
        return _sentence(["are", words[0], "unable to", *words[2:]]) + "?"
    if words[0].lower() in ("you", "we", "they") and len(words) > 1 and words[1].lower() not in _PRONOUN_AUX:
        return _sentence(["do", *words]) + "?"  # "you have SSH access" → "Do you have SSH access?"
    for i, word in enumerate(words[1:14], 1):
        if word.lower() == "cannot":  # "a pod cannot unmount storage" → "Can a pod not unmount storage?"
            return _sentence(["can", *words[:i], "not", *words[i + 1 :]]) + "?"
        if word.lower() in _AUX:
            return _sentence([word, *words[:i], *words[i + 1 :]]) + "?"
    for i, word in enumerate(words[1:10], 1):  # "the health check returns 503" → "Does the health check return 503?"
        lowered = word.lower()
        if lowered in _LEXICAL_VERBS:
            return _sentence(["do", *words[:i], *words[i:]]) + "?"
        if lowered.endswith("s") and _base(lowered) in _LEXICAL_VERBS:
            return _sentence(["does", *words[:i], _base(lowered), *words[i + 1 :]]) + "?"
        if (
            past := next((b for b in (lowered[:-1], lowered[:-2]) if b in _LEXICAL_VERBS), None)
            if lowered.endswith("ed")
            else None
        ):  # "a scale-out caused it" → "Did a scale-out cause it?"
            return _sentence(["did", *words[:i], past, *words[i + 1 :]]) + "?"
    if words[0].lower().endswith("ing"):  # "running on a client cluster" → "Are you running on …?"
        return _sentence(["are", "you", *words]) + "?"
    if words[0].lower() in ("not", "already", "still") or words[0].lower().endswith("ed"):
        return _sentence(["is", "it", *words]) + "?"  # "not already installed" → "Is it not already installed?"
    if len(words) <= 2:  # "CrashLoopBackOff", "node-related": what it is
        return _sentence(["is", "it", *words]) + "?"
    return "Is it so that " + " ".join(words) + "?"


def _base(verb: str) -> str:
    """The base form of a third-person verb: returns → return, matches → match, applies → apply."""
    if verb.endswith("ies"):
        return verb[:-3] + "y"
    if verb.endswith(("ches", "shes", "sses", "xes")):
        return verb[:-2]
    return verb[:-1]


def _sentence(words: list[str]) -> str:
    first, rest = words[0], words[1:]
    if rest and rest[0] == rest[0].capitalize() and rest[0].lower() in _SENTENCE_STARTS:
        rest = [rest[0][:1].lower() + rest[0][1:], *rest[1:]]  # "Is the" not "Is The"
    return " ".join([first.capitalize(), *rest])


@dataclass(frozen=True)
class _Draft:
    """A step before it has ids: its kind, text, source, nesting, and how many steps after it it guards."""

    kind: str  # process | decision
    text: str
    chunk: Chunk
    level: int
    guards: int = 0
    healthy: bool = False  # a decision asking about a healthy state: its remedy is on "no"
    notes: tuple[str, ...] = ()
    collects: bool = False  # "Check parameters such as:": its nested noun phrases join its text
    locates: bool = False  # "Check whether X": a check that locates the fault rather than a question
    remedy: bool = False  # an action (restart, scale, delete…) rather than a check
    said: str = ""  # for "If X, do Y": the sentence as the runbook says it


def _scope(retrieval: Retrieval) -> list[Chunk]:
    """The leading runbook's chunks in order; for a file of many alerts, the lead alert's section."""
    lead = retrieval.passages[0].chunk
    chunks = sorted(
        {p.chunk.chunk_id: p.chunk for p in retrieval.passages if p.chunk.doc_id == lead.doc_id}.values(),
        key=lambda c: c.ordinal,
    )
    named = next((h.node for h in retrieval.nodes if h.via == "named" and lead.doc_id in h.node.doc_ids), None)
    alert = alert_heading(lead.heading_path)
    if named is not None and alert is None:
        in_node = [c for c in chunks if c.chunk_id in named.chunk_ids]
        alert = next((a for c in in_node if (a := alert_heading(c.heading_path))), None)
    if alert is None:
        return chunks
    return [c for c in chunks if alert_heading(c.heading_path) == alert]


def _drafts(chunks: list[Chunk]) -> tuple[list[_Draft], list[str], str | None]:
    """Steps (with notes), see-also references and the escalation sentence of ``chunks``."""
    drafts: list[_Draft] = []
    see_also: list[str] = []
    escalation: str | None = None
    seen: set[str] = set()
    for chunk in chunks:
        for cand in read_section(chunk.text, chunk.heading_path):
            key = clean(cand.text).lower()
            if key in seen:  # overlapping chunk windows repeat lines
                continue
            seen.add(key)
            if (cand.role == "note" or (cand.is_step and _ALTERNATIVELY.match(cand.text))) and drafts:
                # an "Alternatively, use X" is another way to do the step before it: shown with it
                drafts[-1] = replace(drafts[-1], notes=(*drafts[-1].notes, clean(cand.text)))
            elif cand.role == "reference":
                see_also.append(" ".join(cand.text.split()))
            elif cand.is_step and is_escalation(cand.text):
                escalation = escalation or clean(cand.text)
            elif cand.is_step:
                _add(drafts, cand, chunk)
    return drafts, see_also, escalation


def _add(drafts: list[_Draft], cand: Candidate, chunk: Chunk) -> None:
    """Append ``cand`` as steps: "If X, do Y" becomes a decision "X?" guarding a step "Y"."""
    text = imperative(clean(cand.text))
    parent = next((d for d in reversed(drafts) if d.level < cand.level), None)
    if parent is not None and parent.collects and first_verb(cand.text) is None:
        index = drafts.index(parent)  # a list of things to look at, merged into the step that asks for it
        joined = f"{parent.text}{':' if parent.text.endswith(_COLLECTING) else ','} {_short(text)}"
        drafts[index] = replace(parent, text=joined)
        return
    parts = _AND_THEN.split(cand.text, maxsplit=1)
    if cand.role != "decision" and len(parts) == 2 and first_verb(parts[1]) and all("`" in p for p in parts):
        # "Check the job using `…` and look at the pod logs using `…`": two steps, each with its own command
        for part in parts:
            _add(
                drafts,
                replace(cand, text=part[:1].upper() + part[1:], role=role_of(part, "procedure", item=True)),
                chunk,
            )
        return
    if cand.role == "decision" and len(told := sentences(cand.text)) > 1:
        # "Check whether a deployment added replicas. Each replica opens its own pool, …": the question is the
        # first sentence; what follows qualifies it
        count = len(drafts)
        _add(drafts, replace(cand, text=told[0]), chunk)
        if len(drafts) > count:
            drafts[-1] = replace(drafts[-1], notes=(*drafts[-1].notes, *(clean(s) for s in told[1:])))
        return
    if cand.role != "decision":
        remedy = cand.role == "action"
        text = _with_code(text, cand)
        drafts.append(_Draft("process", text, chunk, cand.level, collects=text.endswith(_COLLECTING), remedy=remedy))
        return
    if text.endswith("?"):
        drafts.append(_Draft("decision", text, chunk, cand.level))
        return
    text = strip_lead_in(text)
    condition = _CONDITION.sub("", text)
    if _IF.match(text):  # "If X, do Y": the decision guards Y; "If X, Y is likely" notes Y
        clause = _CLAUSE.split(condition, maxsplit=1)
        if _ALERT_FIRES.match(clause[0].strip()) or _SAME_CASE.match(clause[0].strip()):
            # "If this alert fires, check X": just a step; "If so, do Y": Y under the question before it
            if len(clause) == 2 and first_verb(clause[1]) and role_of(clause[1], "procedure") != "reference":
                asked = bool(drafts) and drafts[-1].kind == "decision" and _SAME_CASE.match(clause[0].strip())
                level = drafts[-1].level + 1 if asked else cand.level
                drafts.append(_Draft("process", imperative(clean(clause[1])), chunk, level))
            return
        question = as_question(clause[0])
        if len(clause) == 2 and first_verb(clause[1]) and role_of(clause[1], "procedure") != "reference":
            drafts.append(_Draft("decision", question, chunk, cand.level, guards=1, said=text))
            drafts.append(_Draft("process", imperative(clean(clause[1])), chunk, cand.level + 1))
        else:
            notes = (clean(clause[1]),) if len(clause) == 2 else ()
            drafts.append(_Draft("decision", question, chunk, cand.level, notes=notes, said=text if notes else ""))
        return
    healthy = bool(_HEALTHY.search(condition)) and not _NEGATED.search(condition)
    drafts.append(_Draft("decision", as_question(condition), chunk, cand.level, healthy=healthy, locates=True))


def _with_code(text: str, cand: Candidate) -> str:
    """A step that hands over to the code after it ("Observe this with", "Run the following command in
    all etcd pods:") says what it runs: the code's first command, when it is one short line."""
    if not cand.code or not _HANDS_OVER.search(cand.text):
        return text
    lines = [ln.strip().removeprefix("$ ") for ln in cand.code[0].splitlines()]
    commands = [ln for ln in lines if ln and not ln.startswith("#")]
    if not commands or len(commands[0]) > _SHORT_CODE:
        return text
    named = _FOLLOWING.sub(commands[0], text, count=1)  # "Run the following command in all pods" → "Run X in all pods"
    return named if named != text else f"{text} {commands[0]}"


def _short(text: str) -> str:
    return " ".join(re.split(r"\s+-\s+|,|\(|;|\bmay\b|\bmaybe\b", text, maxsplit=1)[0].split()[:5]).lower()


def _confirm_and_escalate(scope: list[Chunk]) -> list[_Draft]:
    """For a runbook that describes the alert but gives no procedure (a mixin's "Message:" line):
    confirm what it reports, then hand it on or close it."""
    for chunk in scope:
        described = [c for c in read_section(chunk.text, chunk.heading_path) if c.role == "description"]
        if described:
            what = clean(_FIELD.sub("", described[0].text)).rstrip(".")
            return [
                _Draft("process", f"Confirm what the alert reports: {what}", chunk, 0),
                _Draft("decision", "Is the condition still present?", chunk, 0),
            ]
    return []


def _select(drafts: list[_Draft], limit: int) -> list[_Draft]:
    """At most ``limit`` steps: top-level ones first, spread over the runbook, a decision kept with
    the step it guards."""
    if len(drafts) <= limit:
        return drafts
    top = [d for d in drafts if d.level == 0] or drafts
    if len(top) > limit:
        last = len(top) - 1
        top = [top[i] for i in sorted({round(i * last / (limit - 1)) for i in range(limit)})]
    else:  # room left: nested steps, in order
        top += [d for d in drafts if d.level > 0][: limit - len(top)]
    keep = {id(d) for d in top}
    for i, draft in enumerate(drafts):  # what a kept decision guards comes along
        if id(draft) in keep and draft.guards and i + 1 < len(drafts):
            keep.add(id(drafts[i + 1]))
    kept = [d for d in drafts if id(d) in keep][: limit + 2]
    if kept and kept[-1].guards:  # cut off from what it says to do, a question would only lead to the end
        kept.pop()
    return kept


def _guarded(drafts: list[_Draft], i: int) -> int:
    """How many steps after decision ``i`` it guards: what it says to do, else its nested steps,
    else — for "check whether …" — the remedy right after it."""
    draft = drafts[i]
    if draft.guards:
        return draft.guards
    nested = 0
    for other in drafts[i + 1 :]:
        if other.level <= draft.level:
            break
        nested += 1
    if not nested and draft.locates and i + 1 < len(drafts) and drafts[i + 1].remedy:
        return 1  # "Check whether the health check returns 503." followed by its remedy
    return nested


def plan_extractive(retrieval: Retrieval, *, max_steps: int = MAX_STEPS) -> Workflow | None:
    """A workflow from the leading runbook of ``retrieval``, or None when it holds no procedure."""
    if not retrieval.passages:
        return None
    scope = _scope(retrieval)
    drafts, see_also, escalation = _drafts(scope)
    drafts = _select(drafts, max_steps) or _confirm_and_escalate(scope)
    if not drafts:
        return None
    lead = scope[0] if scope else retrieval.passages[0].chunk
    node_id = next((h.node.node_id for h in retrieval.nodes if lead.doc_id in h.node.doc_ids), None)
    final = _Draft("process", escalation or ESCALATE, lead, 0)
    if drafts[-1].kind == "decision" and drafts[-1].said and not drafts[-1].guards:
        # "If X, Y is likely" as the runbook's last step: a question with nothing after it to guard, said as written
        drafts[-1] = replace(drafts[-1], kind="process", text=drafts[-1].said, notes=())
    fallback = escalation is None or any(p.search(escalation) for p in (_UNRESOLVED, _CUT_OFF))
    if fallback and len(drafts) > 2 and drafts[-1].kind == "process":
        # The runbook's last step ends the workflow, saying what follows it: no step that is not the runbook's
        # (a short aside, so the step still reads as the runbook's own). Where the runbook says whom to turn to
        # when nothing helped ("If you cannot resolve the issue, open a support case"), that is the aside's note.
        last = drafts.pop()
        if len(drafts) > 2 and drafts[-1].guards == 1 and drafts[-1].said:
            # "If X, do Y" ends the runbook: both branches of "X?" would end the workflow, so it is said as written
            last = replace(last, text=drafts.pop().said)
        notes = last.notes if escalation is None else (*last.notes, escalation)
        final = replace(last, text=f"{last.text.rstrip('.')} ({PERSISTS})", notes=notes)
    steps = _link(drafts, final, node_id)
    title = alert_heading(lead.heading_path) or lead.title
    return Workflow(title=title, steps=tuple(steps), see_also=tuple(dict.fromkeys(see_also))[:MAX_SEE_ALSO])


def _link(drafts: list[_Draft], final: _Draft, node_id: str | None) -> list[Step]:
    """Ids and edges: process steps go on, decisions branch around what they guard, one terminal
    ends the workflow (a second, "resolved", where a decision's other branch has nowhere to go)."""
    n = len(drafts)
    end, resolved = f"s{n + 1}", f"s{n + 2}"
    needs_resolved = False
    steps: list[Step] = []
    for i, draft in enumerate(drafts):
        cite = (Citation(doc_id=draft.chunk.doc_id, chunk_id=draft.chunk.chunk_id, node_id=node_id),)
        this, following = f"s{i + 1}", f"s{i + 2}"
        if draft.kind == "process":
            steps.append(
                Step(id=this, type="process", text=draft.text, next=following, citations=cite, notes=draft.notes)
            )
            continue
        guarded = _guarded(drafts, i)
        if guarded:  # what it guards may run to the end: its other branch then resolves
            after = i + 2 + guarded
            remedy, skip = following, f"s{after}" if after <= n + 1 else resolved
            needs_resolved = needs_resolved or after > n + 1
        elif draft.locates:  # "check whether X is degraded" with no remedy given: found → hand it on
            remedy, skip = end, following if i + 1 < n else resolved
            needs_resolved = needs_resolved or i + 1 == n
        elif i + 1 < n:
            remedy, skip = following, f"s{i + 3}" if i + 2 < n else end
        else:
            remedy, skip = end, resolved
            needs_resolved = True
        yes, no = (skip, remedy) if draft.healthy else (remedy, skip)
        if yes == no:
            no = resolved
            needs_resolved = True
        branches = Branches(yes=yes, no=no)
        steps.append(
            Step(id=this, type="decision", text=draft.text, branches=branches, citations=cite, notes=draft.notes)
        )
    final_cite = (Citation(doc_id=final.chunk.doc_id, chunk_id=final.chunk.chunk_id, node_id=node_id),)
    steps.append(Step(id=end, type="terminal", text=final.text, citations=final_cite, notes=final.notes))
    if needs_resolved:
        steps.append(Step(id=resolved, type="terminal", text=RESOLVED, citations=final_cite))
    return steps
