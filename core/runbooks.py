"""How runbooks are read: which blocks of a section are procedure steps, and of what kind.

A step is found by its content — ordered-list items, imperative sentences and bullets, questions,
conditions, ``Action:`` bullets — wherever it sits; heading words only tip the balance for bullets
that are neither imperative nor questions. Every candidate gets a role:

* ``check`` / ``action``: a step (reading the system / changing it);
* ``decision``: a question or condition ("If …", "Check whether …", "Do you see …?");
* ``note``: a ``Note:``/``Warning:`` line or admonition, or a sentence that follows a step in its
  paragraph without saying what to do ("It can originate from …"), attached to the step it qualifies;
* ``reference``: links and past incidents, shown as "see also";
* ``narrative`` / ``caption`` / ``description``: left out of the workflow (explanations of why
  something happens, output described, setting shell variables, lists of what may happen).

Shared by the knowledge-base extractor (retrieval) and the extractive planner (generation), which
must read a runbook the same way. No I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from core.document import Block, parse

Role = Literal["check", "action", "decision", "note", "reference", "narrative", "caption", "description"]
SectionKind = Literal["procedure", "description", "cases", "reference", "other"]
STEP_ROLES = ("check", "action", "decision")

_SECTION_WORDS: dict[SectionKind, tuple[str, ...]] = {
    "reference": ("reference", "link", "further", "see also", "related", "resources", "past incident", "history",
                  "previous incident", "documentation"),
    "procedure": ("diagnos", "troubleshoot", "investigat", "debug", "check", "verif", "mitigat", "resolution",
                  "resolv", "remediat", "fix", "recover", "solution", "procedure", "step", "action", "workaround",
                  "runbook", "what to do", "how to", "playbook", "respon", "triage", "handl", "restor", "rollback",
                  "corrective", "firefight", "operation", "task"),
    "cases": ("cause", "example", "scenario", "reason", "typical"),
    "description": ("meaning", "description", "summary", "overview", "symptom", "problem", "impact", "background",
                    "architecture", "about", "introduction", "intro", "context", "what is", "alert", "explanation",
                    "purpose", "observability", "monitoring", "logging", "dashboard", "metric"),
}  # fmt: skip

# Verbs a step starts with, split by whether they read or change the system.
_CHECK_VERBS = frozenset(
    """
check verify look inspect review examine investigate query confirm identify find search list get describe view
compare monitor watch determine validate test open navigate observe ensure make-sure read browse grep tail
run execute measure count analyze analyse diagnose locate trace track visit go log ssh connect login query curl
dig ping debug print show take collect gather capture dump evaluate assess study note correlate
obtain retrieve fetch access refer inspect extract export download open scroll filter sort expand click select
reproduce profile benchmark sample poll watch wait troubleshoot exec
""".split()
)
_ACTION_VERBS = frozenset(
    """
restart delete remove scale increase decrease add update upgrade downgrade rollback roll apply edit set configure
create contact escalate page notify wait retry try consider use follow talk fix resolve kill terminate drain cordon
uncordon reboot stop start disable enable clean free expand resize reduce move migrate replace recreate reinstall
install patch copy back restore promote failover switch bump raise lower adjust tune limit ask file post reach
reset rotate renew revoke regenerate recycle rebuild redeploy deploy release reschedule evict shut bring force
silence acknowledge ack mute work define provision allocate attach detach mount unmount format purge flush vacuum
reindex compact defragment truncate archive rerun trigger pause resume suspend unpause unblock block allow deny
grant change modify correct repair remediate mitigate prevent avoid investigate escalate inform let tell open
document record write schedule plan coordinate announce communicate disable
""".split()
)
_VERBS = _CHECK_VERBS | _ACTION_VERBS
_LEAD_INS = ("then", "next", "finally", "first", "optionally", "also", "now", "afterwards", "lastly", "second",
             "third", "alternatively", "otherwise", "please", "manually", "carefully", "immediately")  # fmt: skip
_LEAD_IN = re.compile(r"^(?:" + "|".join(_LEAD_INS) + r")\b[,:]?\s*", re.IGNORECASE)
_USED_TO = re.compile(r"\b(?:can|could|may|should) be used to (\w+)|\buse\b.{1,60}?\bto (\w+)", re.IGNORECASE)
_MODAL = re.compile(
    r"^(?:you|we)\s+(?:can|should|may|might|must|need to|will need to|have to|could|want to|will want to)"
    r"(?:\s+(?:be able to|also|first|then|now|always))?(?:\s+(\w+ly))?\s+(\w+)",
    re.IGNORECASE,
)
_TO_DO = re.compile(r"^(?:to|in order to)\s+[^,]{3,80},\s*(.+)$", re.I)
_DECISION = re.compile(
    r"^(?:if|in case|unless|should)\b"
    r"|^(?:check|verify|determine|confirm|see|find out|figure out|establish|ask)\s+(?:whether|if)\b"
    r"|^(?:is|are|does|do|did|has|have|can|could|was|were|will|would)\s.+\?$",
    re.IGNORECASE,
)
_NOTE = re.compile(
    r"^(?:note|warning|caution|important|tip|info|danger|attention|heads[- ]up|nb)\b\s*[:!-]"
    r"|^(?:please\s+)?note\s+that\b",
    re.I,
)
_LINK = re.compile(r"!?\[([^\]]*)\]\(([^)]*)\)")
_URL = re.compile(r"https?://\S+")
_PAST_INCIDENT = re.compile(
    r"/(?:issues|incidents?|merge_requests)/\d+|\bincident\s*(?:#\d+|\d{4,})|#\d{3,}\b|\b(?:19|20)\d\d-\d\d-\d\d\b"
    r"|\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+\d{1,2},?\s+(?:19|20)\d\d\b",
    re.IGNORECASE,
)
_SEE = re.compile(r"^(?:see|refer to|for more|more info|more detail|read more|further reading|related|documentation"
                  r"|docs?\b|source|reference|link|dashboard\s*:|runbook\s*:|e\.g\.)", re.I)  # fmt: skip
# "Further info … can be found in the [docs][ref]": a pointer, also when the link is reference-style.
_FOUND_IN = re.compile(
    r"\b(?:can be found|is documented|are documented|further info\w*|more info\w*)\b"
    r"|\[[^\]]+\]\[[^\]]*\]",
    re.IGNORECASE,
)
# A pointer to steps given elsewhere in the document ("Use the same diagnostic approaches as listed above", "Look
# at the Troubleshooting section", "refer to the documentation links in the Mitigation section below").
_ELSEWHERE = re.compile(
    r"\b(?:steps|approaches|instructions|procedures?|actions|recommendations|guidance|tips|resources)\b[^.;]{0,40}?"
    r"\b(?:mentioned|listed|described|outlined|given)\s+(?:above|below|earlier|in\b)"
    r"|^(?:please\s+)?(?:look\s+at|refer\s+to|see|go\s+to|follow|check)\s+(?:the\s+)?(?:\w+\s+){0,2}"
    r"(?:section|links)\b(?!\s+(?:of|for)\s+(?:the\s+)?(?:pod|node|alert|log))"
    r"|\brefer\s+to\s+the\s+(?:\w+\s+)?links\s+in\b"
    r"|\b(?:steps|approaches|instructions|procedures?)\s+(?:in|of|from)\s+the\s+[\w-]+(?:\s+[\w-]+)?\s+section\b",
    re.IGNORECASE,
)
_NARRATIVE = re.compile(r"^(?:now|we|i|our|here|so|at this point|at the time|previously|historically"
                        r"|in this (?:section|document|runbook|guide|page)|(?:this|the) (?:alert|page|document|runbook"
                        r"|section|guide)|the following (?:is|are|shows?))\b", re.I)  # fmt: skip
# Why something happens, what it means, what the default is: an explanation, not a step, unless it also says
# what to do ("In this case, increase the CPU", "you can disable it", "it is recommended to …").
_EXPLAINS = re.compile(
    r"\b(?:can|could|may|might|will|usually|often|typically)\s+(?:happen|occur)\b|\bhappens?\s+(?:when|if)\b"
    r"|\b(?:is|are)\s+(?:often\s+|usually\s+|typically\s+|mostly\s+)?caused\s+by\b|\b(?:be|is|are)\s+(?:the\s+)?result\s+of\b"
    r"|\bdepends?\s+on\b|\bindicates?\s+(?:that\s+)?(?:an?\s+|the\s+)?\w+|\bis\s+the\s+equivalent\s+of\b|\bthe\s+default\s+(?:behaviou?r|is)\b|^there\s+(?:is|are)\s+no\b"
    r"|\bwill\s+most\s+likely\s+be\b|\bis\s+possible\s+for\b|\bshould\s+help\b"
    r"|^(?:the\s+)?(?:most\s+(?:common|likely)\s+)?causes?\s*(?::|can\b|could\b|might\b|may\b|is\b|are\b)",
    re.IGNORECASE,
)
# What the reader will see (output described): not a step, even when it says "you should".
_SEEN = re.compile(
    r"\bwill\s+be\s+(?:visible|shown|displayed|listed|printed)\b|\b(?:you|we)\s+(?:should|will)\s+(?:see|find|get|notice"
    r"|expect)\b|\bsimilar\s+to\s+(?:this|the\s+following)\b|^result\s*:"
    r"|\b(?:should|will)\s+(?:now\s+)?be\s+(?:available|restored|back|resolved|fixed|freed|cleared|gone)\s+now\b",
    re.IGNORECASE,
)
# Setting a shell variable for the commands after it: scaffolding of the next step, not a step.
_SETUP = re.compile(
    r"^(?:set|export|define)\s+(?:the\s+|a\s+)?[\w$`-]+\s+(?:environment\s+|shell\s+)?variables?\b"
    r"|\b(?:replace|substitute)\s+(?:the\s+)?`?\$?\w+`?\s+(?:variable|placeholder)\b",
    re.I,
)
_INSTRUCTS = re.compile(
    r"\b(?:you|we)\s+(?:can|could|should|must|may|might|need|have\s+to|will\s+need)\b|\brecommended\b"
    r"|\bin\s+(?:this|that|such\s+a)\s+case\b|\bneeds?\s+to\s+be\b|\bsolves?\b",
    re.IGNORECASE,
)
_ACTION_LABEL = re.compile(r"^\W*(?:action|actions|remediation|fix|resolution|mitigation|steps?|todo)\W*:\s*", re.I)
_FIELD_LABEL = re.compile(r"^\W*(?:message|severity|summary|description|labels?|expr|for|impact)\W*:", re.I)
_ESCALATION = re.compile(
    r"\b(?:escalat\w*|contact|page\s+(?:the|an?|on)|reach out|notify|open an? (?:ticket|issue|case|incident)"
    r"|raise an? (?:ticket|issue|case)|file an? (?:issue|ticket|bug)|support case|ask for help|get help"
    r"|disaster recovery|(?:refer to|follow|consult)\s+(?:the\s+)?[^.]{0,80}?(?:documentation|docs|guide))\b",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\bvs\.)(?<!\betc\.)\s+(?=[A-Z`\"'(])")
_IDENT = re.compile(r"^`?[a-z][a-z0-9]*_[a-z0-9_:]+`?\b", re.IGNORECASE)
MAX_TEXT = 300


@dataclass(frozen=True)
class Candidate:
    """A piece of a section with its role. ``text`` is inline Markdown (links, code spans);
    ``code`` holds the code blocks that follow it (commands, queries); ``level`` is its list
    nesting; ``ordered`` says it is an item of a numbered list."""

    text: str
    role: Role
    level: int = 0
    ordered: bool = False
    code: tuple[str, ...] = ()

    @property
    def is_step(self) -> bool:
        return self.role in STEP_ROLES


def section_kind(heading_path: Sequence[str]) -> SectionKind:
    """What a section is about, from the nearest heading that says: a procedure, a description,
    typical cases, references, or ``other`` when no heading does."""
    for heading in reversed(heading_path):
        lowered = heading.lower()
        for kind, words in _SECTION_WORDS.items():
            if any(word in lowered for word in words):
                return kind
    return "other"


def first_verb(text: str) -> str | None:
    """The verb a step starts with ("Then restart the pod" → ``restart``), or None if it does not."""
    words = re.findall(r"[A-Za-z][\w'-]*", _LINK.sub(r"\1", text).replace("`", " "))
    while words and words[0].lower() in _LEAD_INS:
        words = words[1:]
    if not words:
        return None
    if (modal := _MODAL.match(" ".join(words))) is not None:
        word = modal.group(2).lower()
    elif len(words) > 1 and f"{words[0]}-{words[1]}".lower() in _VERBS:
        word = f"{words[0]}-{words[1]}".lower()
    else:
        word = words[0].lower()
    return word if word in _VERBS else None


def role_of(text: str, section: SectionKind, *, item: bool = False, ordered: bool = False, quote: str = "") -> Role:
    """The role of one sentence or list item found in a section of kind ``section``. In sections that
    describe (meaning, impact, causes) only imperative sentences are steps."""
    role = _role(text, section, item=item, ordered=ordered, quote=quote)
    if section in ("description", "cases") and role == "decision":
        return "description"
    return role


def _role(text: str, section: SectionKind, *, item: bool, ordered: bool, quote: str) -> Role:
    bare = _LINK.sub(r"\1", text).strip().strip("*_").strip()
    bare = _LEAD_IN.sub("", bare)
    words = bare.split()
    if quote in ("note", "tip", "important", "warning", "caution", "danger") or _NOTE.match(bare):
        return "note"
    if not words or _FIELD_LABEL.match(bare):
        return "description"
    if _is_reference(text, bare) or section == "reference" or (_SEE.match(bare) and not _DECISION.match(bare)):
        return "reference"
    if _DECISION.match(bare) or (bare.endswith("?") and len(words) >= 3):
        return "decision"
    if _SETUP.search(bare):
        return "narrative"
    if (verb := first_verb(bare)) is not None:
        return "check" if verb in _CHECK_VERBS else "action"
    if (_EXPLAINS.search(bare) and not _INSTRUCTS.search(bare)) or _SEEN.search(bare):
        return "narrative"  # "This can happen if …", "Running out of inodes is often caused by …"
    if section == "procedure" and (purpose := _USED_TO.search(bare)) and (purpose[1] or purpose[2]).lower() in _VERBS:
        return "check"  # "`up == 0` can be used to check the trend"
    if _is_caption(bare) or len(words) < 3 or bare.endswith(":"):
        return "caption"  # titles, one-word list entries, labels of the list below
    if section == "description":
        return "description"
    if section == "cases":
        return "description"
    if section == "procedure" and not _NARRATIVE.match(bare):
        return "check"  # "app waits for the database" under "Other things to check:"; "logs should show …"
    if ordered and section == "other" and not _NARRATIVE.match(bare):
        return "check"
    return "narrative"


def _is_reference(text: str, bare: str) -> bool:
    pointing = first_verb(bare) in (None, "read", "visit", "follow", "open", "go", "navigate")
    if _PAST_INCIDENT.search(text) or (_FOUND_IN.search(bare) and pointing):
        return True
    if _ELSEWHERE.search(bare) and "`" not in text:
        return True  # "Take the steps mentioned in mitigation": the steps are there, not here
    links = _LINK.findall(text) + _URL.findall(text)
    if not links or not pointing:
        return False  # "Use the [dashboard](…)": the link is what the step works on
    rest = _URL.sub("", _LINK.sub("", text)).strip(" .:;,-()*_`")
    return len(rest.split()) <= 2 or bool(_SEE.match(bare))


_FINITE = re.compile(r"\s(?:is|are|was|were|can|could|will|would|should|must|has|have|does|do)\s")


def _is_caption(bare: str) -> bool:
    """Titles, figure captions and metric descriptions ("Container_memory_usage_bytes Current …")."""
    if _IDENT.match(bare):
        return True
    words = [w for w in re.findall(r"[A-Za-z][\w'-]*", bare) if len(w) > 3]
    if not words or len(words) > 8 or bare.endswith((".", ":", "?")):
        return False
    if ", " in bare and len(bare.split()) >= 6:
        return False  # a sentence with a clause or a list of names in it ("It can originate from Prometheus, …")
    if _FINITE.search(bare):
        return False  # "This ClusterRole is provisioned during …": a sentence, though its names are capitalised
    capitalised = sum(w[0].isupper() for w in words)
    return bool(capitalised >= max(1.0, 0.6 * len(words)))


def sentences(text: str) -> list[str]:
    """A paragraph's sentences (a code span or link never splits)."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def read_section(text: str, heading_path: Sequence[str] = ()) -> list[Candidate]:
    """Every candidate of a section's canonical Markdown, in order; code blocks are attached to the
    candidate before them, never candidates themselves. Tables and headings give none, except a
    heading that says what to do with the code right under it ("### Step 4: Inspect logs" then a
    shell block): that heading is the step the code belongs to. A line that introduces code ("To
    see all nodes using runc via metrics:") is a check, not a caption."""
    section = section_kind(heading_path)
    found: list[Candidate] = []
    heading = heading_path[-1] if heading_path else ""  # the heading nothing has been read under yet
    consequences: int | None = None  # the level of a list of what may happen ("Continuing to use runc may:")
    causes: int | None = None  # the level of a list of causes ("Lag can be caused by a number of factors:")
    for block in parse(text).blocks:
        if block.kind == "heading":
            heading = block.text
            continue
        if block.kind == "code":
            if heading:  # code right under a heading is that heading's, never the step of another section
                if (step := _heading_step(heading, section)) is None:
                    heading = ""
                    continue
                found.append(step)
            if found:
                last = found[-1]
                role = last.role
                if role == "caption" and section not in ("description", "cases") and _introduces_code(last.text):
                    role = "check"
                found[-1] = replace(last, role=role, code=(*last.code, block.text))
            heading = ""
            continue
        heading = ""
        if block.kind == "item" and consequences is not None and block.level >= consequences:
            found.append(Candidate(block.text[:MAX_TEXT], "description", block.level, block.ordered))
            continue
        if block.kind == "item" and causes is not None and block.level >= causes and not _says_to_do(block.text):
            found.append(Candidate(block.text[:MAX_TEXT], "description", block.level, block.ordered))
            continue
        consequences = block.level if block.kind == "paragraph" and _CONSEQUENCES.search(block.text) else None
        if block.kind == "paragraph" and _CAUSES.search(block.text):
            causes = block.level
        elif block.kind != "item" and not _LABEL.match(block.text):
            causes = None  # a group label ("**Network Issues:**") keeps the list of causes going
        found.extend(_candidates(block, section))
    return found


# What a line introducing code says when the code is what the system printed, not what to run.
_OUTPUT_LABEL = re.compile(r"\b(?:output|result|response|looks? like|example|e\.g\.|for instance)\b", re.IGNORECASE)


def _introduces_code(text: str) -> bool:
    """A sentence that ends with a colon and says what the code after it does ("To see all nodes using
    runc via metrics:", "A stuck collector query shows up in `pg_stat_activity`:"); not a title
    ("Data Type Mismatches:") nor a label of output ("Example output:")."""
    bare = _LINK.sub(r"\1", text).strip().strip("*_").strip()
    if not bare.endswith(":") or _OUTPUT_LABEL.search(bare):
        return False
    words = bare.rstrip(":").split()
    return len(words) >= 4 and not _is_caption(bare.rstrip(":"))


# "Continuing to use runc may:", "This alert will:": the list after it says what happens, not what to do.
_CONSEQUENCES = re.compile(r"\b(?:may|might|can|could|will|would)(?:\s+(?:also|then|eventually))?\s*:\s*$", re.I)
# "… can be caused by a number of factors:", "Typical causes include:": the list after it names causes, not steps.
_CAUSES = re.compile(r"\b(?:caused\s+by|causes|reasons|factors|culprits)\b[^.:]*:\s*$", re.IGNORECASE)
_LABEL = re.compile(r"^[*_\s]*[\w /&-]{1,40}:[*_\s]*$")
_STEP_LABEL = re.compile(r"^(?:step\s*)?\d+\s*[.:)-]?\s*|^step\s*[.:)-]?\s*", re.IGNORECASE)


def _heading_step(heading: str, section: SectionKind) -> Candidate | None:
    """The step a heading names when code follows it directly: an instruction ("Step 2: Check the
    metrics endpoint" → "Check the metrics endpoint"), else None."""
    text = _STEP_LABEL.sub("", heading.strip()).strip()
    if section in ("description", "cases", "reference") or first_verb(text) is None:
        return None
    role = role_of(text, "procedure", item=True)
    return Candidate(text[:MAX_TEXT], role) if role in ("check", "action") else None


def _candidates(block: Block, section: SectionKind) -> list[Candidate]:
    if block.kind in ("table", "heading"):
        return []
    if block.kind == "item":
        text = _ACTION_LABEL.sub("", block.text)
        labelled = text != block.text
        role = role_of(text, "procedure" if labelled else section, item=True, ordered=block.ordered)
        if labelled and role in ("narrative", "description", "caption"):
            role = "action"  # "+ *Action*: …" says what it is
        return [Candidate(text[:MAX_TEXT], role, block.level, block.ordered)]
    found: list[Candidate] = []
    for sentence in sentences(block.text):
        if (main := _TO_DO.match(sentence)) is not None and first_verb(main.group(1)):
            sentence = main.group(1)  # "To fix this, restart X" → "restart X"
        role = role_of(sentence, section, quote=block.info if block.kind == "quote" else "")
        if role == "check" and found and found[-1].role in ("check", "action", "note") and not _instructs(sentence):
            role = "note"  # "Determine which component fired. It can originate from …": what the step needs to know
        found.append(Candidate(sentence[:MAX_TEXT], role, block.level))
    return found


def _instructs(sentence: str) -> bool:
    """Whether a sentence says what to do: an instruction, a question or condition, a check a query serves."""
    bare = _LEAD_IN.sub("", _LINK.sub(r"\1", sentence).strip().strip("*_").strip())
    return first_verb(bare) is not None or bool(_DECISION.match(bare)) or bool(_USED_TO.search(bare))


def _says_to_do(text: str) -> bool:
    """An instruction, also as a gerund ("Checking the router logs", "Scaling backend pods")."""
    word = next(iter(re.findall(r"[A-Za-z]+", text)), "").lower()
    doing = word.endswith("ing") and any(w in _VERBS for w in (word[:-3], word[:-3] + "e", word[:-4]))
    return doing or _instructs(text)


def strip_lead_in(text: str) -> str:
    """``text`` without a leading "Then,", "Next", "Finally:"…, capitalised."""
    text = _LEAD_IN.sub("", text.strip())
    return text[:1].upper() + text[1:]


def imperative(text: str) -> str:
    """A step said as an instruction: "You can open a shell on the node" → "Open a shell on the node"."""
    match = _MODAL.match(text)
    if match is None or match.group(2).lower() not in _VERBS:
        return text
    rest = text[match.start(1 if match.group(1) else 2) :]  # "you can safely delete it" → "Safely delete it"
    return rest[:1].upper() + rest[1:]


def is_escalation(text: str) -> bool:
    """A sentence that hands the incident on (escalate, contact, page, open a ticket, disaster recovery)."""
    return bool(_ESCALATION.search(text))


_ALERT_HEADING = re.compile(r"^(?:alert(?:\s*name)?\s*:\s*)?[\"'`]?([A-Za-z][A-Za-z0-9_:.-]*)[\"'`]?$", re.IGNORECASE)


def alert_heading(heading_path: Sequence[str]) -> str | None:
    """The alert a section documents, from a heading that names one (``KubeJobFailed``,
    ``Alert Name: "KubeJobFailed"``), nearest first; None when no heading names an alert."""
    for heading in reversed(heading_path):
        match = _ALERT_HEADING.match(heading.strip())
        if match and _is_alert_name(match.group(1)):
            return match.group(1)
    return None


def _is_alert_name(name: str) -> bool:
    """CamelCase with two humps or more (``KubeJobFailed``, ``etcdNoLeader``) or snake_case."""
    humps = len(re.findall(r"[A-Z][a-z0-9]+|[A-Z]+(?=[A-Z][a-z]|\b)", name))
    return (humps >= 2 and not name.isupper()) or ("_" in name and name.lower() == name and len(name) > 6)


def why_no_procedure(sections: Sequence[tuple[Sequence[str], str]]) -> str | None:
    """None when ``sections`` ((heading path, canonical Markdown) pairs) hold at least one step;
    otherwise what was found instead, in words an admin can act on."""
    found = [c for path, text in sections for c in read_section(text, path)]
    if any(c.is_step for c in found):
        return None
    if not found:
        return "no text outside tables, code and headings"
    counts: dict[str, int] = {}
    for cand in found:
        counts[cand.role] = counts.get(cand.role, 0) + 1
    kinds = ", ".join(f"{n} {role}" for role, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    return f"no numbered list, imperative sentence, question or condition ({kinds})"
