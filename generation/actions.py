"""Actions from runbook text: the concrete check a step's runbook passage gives becomes its tool call.

Where a step's check is looked for, in order: the step's own text; the sentence of a cited chunk
the step was written from, then the rest of its paragraph or list item; then the code blocks right
after that paragraph or item. A code span or code-block line holding a command that a tool's
allowlist accepts becomes that command, one holding a PromQL expression a query, an http(s) URL
in the prose a probe. Only tools of the catalogue are used and the catalogue sets the mode, so text
can propose a call but never make a write a read, nor call anything the deployment did not
configure. Shell pipelines, redirections and ``$(…)`` are not concrete checks.

Placeholders (``<namespace>``, ``<pod-name>``, ``$POD``, ``${NAMESPACE}``, ``{{ $labels.namespace }}``,
``{{ .Labels.pod }}``, ``{namespace}``) are filled from known values: an alert's labels and the
entities a question names (``entities_of``), by canonical name (``canonical``: ``pod-name``,
``POD_NAME``, ``$POD`` → ``pod``). A placeholder without a usable value stays as written and is
named in ``Action.missing``: the step shows the command, and nothing runs it.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from core.document import parse
from core.types import Action, Chunk, Step, ToolSpec, Workflow

_CODE = re.compile(r"`([^`\n]+)`")
_URL = re.compile(r"https?://[^\s`<>()\[\]'\"]+")
_SHELL_SYNTAX = {"|", "||", "&&", ";", ">", ">>", "<", "&", "2>", "2>&1"}
_PROMQL = re.compile(
    r"[A-Za-z_:][\w:]*\s*[{\[(]"  # a selector, a range or a function call
    r"|[A-Za-z_:][\w:]*\s+(?:by|without)\s*\("  # an aggregation: sum by (job) (…)
    r"|[A-Za-z_:][\w:]*\s*(?:==|!=|>=|<=|>|<)\s*-?\d"  # a metric compared with a number
)
# A comparison with a number at the very end of a decision's query is its rule, not part of the
# question: stripped, the query returns the values the rule is checked on (and shown) instead of
# an empty result when the condition is false. Other steps run the query as written (``up == 0``
# lists the targets that are down).
_TRAILING_RULE = re.compile(r"\s*(?:==|!=|>=|<=|>|<)\s*-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?\s*$")
# Braces listing alternatives (``Alert{Critical,Warning}``) are a way of writing names, not a selector.
_NOT_A_SELECTOR = re.compile(r"\{[^{}\"'=~]*,[^{}\"'=~]*\}")
_LOGICAL = re.compile(r"\b(?:and|or|unless|bool)\b")

_PLACEHOLDER = re.compile(
    r"\{\{-?\s*\$?\.?[Ll]abels\.(\w+)\s*-?\}\}"  # {{ $labels.namespace }}, {{ .Labels.pod }}
    r"|\$\{([A-Za-z_]\w*)\}"  # ${NAMESPACE}
    r"|\$([A-Za-z_]\w*)"  # $POD
    r"|<([A-Za-z][\w.-]*)>"  # <namespace>, <pod-name>
    r"|(?<![{$\w])\{([A-Za-z_][\w-]*)\}(?!\})"  # {namespace}
)
_ALIASES = {
    "ns": "namespace", "po": "pod", "deploy": "deployment", "ds": "daemonset", "sts": "statefulset",
    "svc": "service", "pv": "persistentvolume", "pvc": "persistentvolumeclaim", "nodename": "node",
}  # fmt: skip
# Kubernetes resource kinds: ``kubectl describe daemonset $NAME`` names a daemonset.
_RESOURCES = frozenset(
    "namespace pod node deployment daemonset statefulset replicaset service job cronjob "
    "persistentvolume persistentvolumeclaim".split()
)
# What a value must look like to be put into a command or a query: one word, no quotes or spaces,
# not an option (a namespace called "--kubeconfig=…" must not become one).
_SAFE_VALUE = re.compile(r"[A-Za-z0-9][\w.:/@+-]{0,252}")

_SHELL_BLOCKS = {"", "bash", "sh", "shell", "console", "zsh"}
_PROMQL_BLOCKS = {"", "promql", "prometheus"}
# A line of Prometheus output (``metric{labels} 1``), not a query.
_SAMPLE = re.compile(r"^[A-Za-z_:][\w:]*(?:\{.*\})?\s+-?[\d.]+(?:[eE][+-]?\d+)?(?:\s+\d+)?$")
_ASSIGNMENT = re.compile(r"(?:export\s+)?(?P<name>[A-Za-z_]\w*)=(?P<quote>[\"']?)(?P<value>[^\"'\s]*)(?P=quote)")
_VARIABLE = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_]\w*)\}|(?P<name>[A-Za-z_]\w*))")
_ALTERNATIVE = re.compile(r"(?:alternatively|as an alternative)\b", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`])")
_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset("a an the of to in on for and or is are be it its this that with by as at from if then".split())
MATCH = 0.6  # share of a step's words its source sentence must hold
# kubectl options that may stand before the verb; moved after it, the allowlist sees the verb.
_KUBECTL_GLOBAL_VALUED = {"-n", "--namespace", "--context", "--cluster"}
_KUBECTL_GLOBAL_FLAGS = {"-A", "--all-namespaces"}


def canonical(name: str) -> str:
    """The canonical name of a placeholder, label or resource kind: lower case, ``_`` separated,
    without a trailing ``name`` or a leading ``my``/``your``/``the``, in the singular for resource
    kinds (``<pod-name>``, ``$POD_NAME``, ``podname``, ``pods`` → ``pod``; ``$NS`` → ``namespace``;
    ``PV`` → ``persistentvolume``)."""
    key = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    key = re.sub(r"^(?:my|your|the)_", "", key)
    key = re.sub(r"_?name$", "", key) or key
    if key.endswith("s") and (key[:-1] in _RESOURCES or key[:-1] in _ALIASES):
        key = key[:-1]
    return _ALIASES.get(key, key)


def fill(action: Action, known: Mapping[str, str]) -> Action:
    """``action`` with every placeholder in its arguments replaced by its value in ``known`` (keys are
    canonicalised; values that are not one safe word are not used); the rest are its ``missing``."""
    values = _usable(known)
    missing: list[str] = []

    def substituted(text: str, kind: str = "") -> str:
        def one(match: re.Match[str]) -> str:
            name = canonical(next(g for g in match.groups() if g))
            name = kind if name == "name" and kind else name
            if (value := values.get(name)) is not None:
                return value
            missing.append(name)
            return match.group(0)

        return _PLACEHOLDER.sub(one, text)

    if isinstance(argv := action.args.get("argv"), list):
        # A generic name (``$NAME``, ``<name>``) after a resource kind is that resource's name.
        kinds = ["", *(_resource(w) for w in argv[:-1])]
        words = [
            substituted(w, _resource(w.split("/", 1)[0]) if "/" in w else kind)
            for w, kind in zip(argv, kinds, strict=True)
        ]
        args = {**action.args, "argv": words}
    else:
        args = _mapped(action.args, substituted)
    return action.model_copy(update={"args": args, "missing": tuple(dict.fromkeys(missing))})


def needs(action: Action) -> str:
    """What an action lacks to run, in words (``needs: namespace, pod``); "" when it can run."""
    return f"needs: {', '.join(action.missing)}" if action.missing else ""


def shown(action: Action) -> str:
    """An action's call as an engineer reads it: a command line, else the arguments as JSON; with
    what it needs when a placeholder has no value (``kubectl get pods -n <namespace> (needs: namespace)``)."""
    args = action.args
    text = " ".join(args["argv"]) if set(args) == {"argv"} else json.dumps(args, ensure_ascii=False)
    return f"{text} ({needs(action)})" if action.missing else text


def action_for(
    text: str, tools: Mapping[str, ToolSpec], known: Mapping[str, str] | None = None, *, decision: bool = False
) -> Action | None:
    """The check ``text`` (a runbook sentence, code spans in backticks) gives, as a call of a catalogue
    tool with placeholders filled from ``known``: the first runnable one, else the first one with
    missing values, else None. For a ``decision`` a query's trailing comparison with a number is left
    out: it is the decision's rule, and the query returns the values the rule is checked on."""
    return _best(_prose_actions(text, tools), known or {}, decision=decision)


def checks_in(text: str, tools: Mapping[str, ToolSpec]) -> list[Action]:
    """Every check a chunk's ``text`` (markdown) holds, in code spans, code blocks or prose URLs, as
    catalogue calls with their placeholders unfilled (named in ``missing``)."""
    found = []
    for passage in _passages(text):
        found += [fill(a, {}) for a in _prose_actions(passage.text, tools)]
        found += [fill(a, {}) for a in _block_actions(passage, tools)]
    return found


def attach_actions(
    workflow: Workflow,
    chunks: Mapping[str, Chunk],
    tools: Mapping[str, ToolSpec],
    known: Mapping[str, str] | None = None,
) -> Workflow:
    """``workflow`` with an action on every step whose text, or the runbook passage it was written
    from (in its cited ``chunks``, by chunk id), gives a check a catalogue tool accepts.

    ``known`` maps names to values for placeholders: an alert's labels, ``entities_of(question)``.
    Steps that already carry an action keep it, with its placeholders filled from ``known``."""
    values = known or {}
    steps = []
    for step in workflow.steps:
        if step.action is not None:
            action: Action | None = fill(step.action, values)
        else:
            action = _best(_step_actions(step, chunks, tools), values, decision=step.type == "decision")
        steps.append(step if action == step.action else step.model_copy(update={"action": action}))
    return workflow.model_copy(update={"steps": tuple(steps)})


# --- entities a question names -------------------------------------------------------------------

_KINDS = (
    "namespace", "pod", "node", "deployment", "daemonset", "statefulset", "service", "job", "cronjob",
    "instance", "container", "cluster", "pvc", "pv",
)  # fmt: skip
_KIND = r"(?P<kind>" + "|".join(_KINDS) + r")"
_VALUE = r"(?P<quote>[`'\"])?(?P<value>[A-Za-z0-9](?:[\w.:-]*[A-Za-z0-9])?)"
_FLAG = re.compile(r"(?:^|\s)(?:-n|--namespace)(?:\s+|=)" + _VALUE)
_KIND_THEN_NAME = re.compile(r"\b" + _KIND + r"(?:\s+|\s*(?P<equals>=)\s*)" + _VALUE, re.IGNORECASE)
_KIND_SLASH_NAME = re.compile(r"(?<![\w/.-])(?P<kind>" + "|".join((*_KINDS, *_ALIASES)) + r")/" + _VALUE, re.IGNORECASE)
_NAME_THEN_KIND = re.compile(
    r"(?:\b(?P<lead>(?:in|on|from|of|for)\s+(?:the\s+)?|the\s+)|(?<![\w/.-]))" + _VALUE + r"\s+" + _KIND + r"(?![\w-])",
    re.IGNORECASE,
)
_NAMESPACE_SLASH_POD = re.compile(
    r"(?<![\w/:.-])(?P<ns>[a-z][a-z0-9-]*)/(?P<pod>[a-z][a-z0-9.]*-[a-z0-9.-]*[a-z0-9])(?![\w/])"
)
_NOT_A_NAME = frozenset(
    "a an the this that these those my our your its their is are was were be been being has have had keeps keep "
    "not no and or of in on for to with from by at as which what where when who it name names level label labels "
    "selector status state quota limit limits every each all any some one same".split()
)


def entities_of(text: str) -> dict[str, str]:
    """Kubernetes and Prometheus entities ``text`` (a question) names, by canonical name: namespace,
    pod, node, deployment, daemonset, statefulset, service, job, cronjob, instance, container, cluster,
    persistentvolume(claim). Recognised forms, the more explicit first (the first value found for a
    name is kept): ``-n payments``, ``--namespace=payments``; ``pod/foo-123``, ``deploy/api``;
    ``namespace payments``, ``namespace="payments"``, ``pod foo-123``; ``in (the) payments namespace``,
    ``node-exporter daemonset``; ``payments/foo-abc`` (namespace/pod). A plain word is a name only
    after ``=``, in quotes, after ``namespace`` or in "in (the) … namespace" (``the pod keeps…`` and
    "the postgres cluster" name nothing); other names need a digit, ``-``, ``.``, ``:`` or ``_``."""
    found: dict[str, str] = {}
    for match in _FLAG.finditer(text):
        _keep(found, "namespace", match, plain_ok=True)
    for match in _KIND_SLASH_NAME.finditer(text):
        _keep(found, canonical(match["kind"]), match, plain_ok=True)
    for match in _KIND_THEN_NAME.finditer(text):
        plain_ok = bool(match["equals"]) or match["kind"].lower() == "namespace"
        _keep(found, canonical(match["kind"]), match, plain_ok=plain_ok)
    for match in _NAME_THEN_KIND.finditer(text):
        kind = canonical(match["kind"])
        _keep(found, kind, match, plain_ok=bool(match["lead"]) and kind == "namespace")
    for match in _NAMESPACE_SLASH_POD.finditer(text):
        if match["ns"] not in _NOT_A_NAME and canonical(match["ns"]) not in (*_KINDS, *_RESOURCES):
            found.setdefault("namespace", match["ns"])
            found.setdefault("pod", match["pod"])
    return found


def _keep(found: dict[str, str], kind: str, match: re.Match[str], *, plain_ok: bool) -> None:
    value = match["value"]
    if value.lower() in _NOT_A_NAME or canonical(value) in _RESOURCES or kind in found:
        return
    if plain_ok or match["quote"] or re.search(r"[\d.:_-]", value):
        found[kind] = value


# --- where a step's check is -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Passage:
    """A paragraph, list item or table cell of a chunk (inline markdown), with the code blocks
    (info string, code) that come right after it."""

    text: str
    blocks: tuple[tuple[str, str], ...] = ()


@functools.lru_cache(maxsize=512)
def _passages(markdown: str, heading: str = "") -> tuple[_Passage, ...]:
    """The passages of a chunk's ``markdown`` (``core.document``'s blocks) in order: a paragraph, a
    list item with the paragraphs it holds, a table row. A paragraph or item that starts
    "Alternatively, …" is another way to do what the one before it says: it joins that passage. A
    code block belongs to the passage before it; code with no text before it, right under a heading
    (``heading`` is the one the chunk starts under), belongs to that heading ("Step 4: Inspect logs"),
    which the planner makes a step of."""
    passages: list[_Passage] = []
    after_text = False  # whether a code block now comes right after a text block (or its heading)
    item_level: int | None = None  # the level of the list item the last passage is, if it is one
    for block in parse(markdown).blocks:
        if block.kind == "code":
            code = ((block.info.split() or [""])[0].lower(), block.text)
            if after_text:
                passages[-1] = _Passage(passages[-1].text, (*passages[-1].blocks, code))
            else:
                passages.append(_Passage(heading, (code,)))
                after_text = bool(heading)
            heading = ""
        elif block.kind == "heading":
            after_text, item_level, heading = False, None, block.text
        elif (block.kind == "paragraph" and item_level is not None and block.level > item_level) or (
            after_text and _ALTERNATIVE.match(block.text)
        ):
            last = passages[-1]  # a paragraph of the item, or another way to do the same: the same step
            passages[-1] = _Passage(f"{last.text} {block.text}", last.blocks)
        else:
            passages += [_Passage(row) for row in block.text.split("\n")]
            after_text, item_level, heading = True, block.level if block.kind == "item" else None, ""
    return tuple(passages)


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS}


def _source(step: Step, chunks: Mapping[str, Chunk]) -> tuple[str, _Passage] | None:
    """The sentence of the cited chunks that ``step`` was written from (the best share of its words,
    at least ``MATCH``), and its passage; for a step that joins several sentences, the passage
    holding enough of its words. None when no sentence or passage holds enough of them."""
    wanted = _words(step.text)
    if not wanted:
        return None
    passages = [
        p
        for c in step.citations
        if (chunk := chunks.get(c.chunk_id))
        for p in _passages(chunk.text, chunk.heading_path[-1] if chunk.heading_path else "")
    ]
    for pieces in (lambda p: _SENTENCE_END.split(p.text), lambda p: [p.text]):
        best: tuple[float, str, _Passage] | None = None
        for passage in passages:
            for piece in pieces(passage):
                share = len(wanted & _words(piece)) / len(wanted)
                if share >= MATCH and (best is None or share > best[0]):
                    best = (share, piece, passage)
        if best is not None:
            return best[1], best[2]
    return None


def _step_actions(step: Step, chunks: Mapping[str, Chunk], tools: Mapping[str, ToolSpec]) -> Iterator[Action]:
    """The checks that belong to ``step``, nearest first: its text, its sentence, the rest of its
    paragraph or list item, the code blocks right after it."""
    yield from _prose_actions(step.text, tools)
    if (source := _source(step, chunks)) is not None:
        sentence, passage = source
        yield from _prose_actions(sentence, tools)
        yield from _prose_actions(passage.text, tools)
        yield from _block_actions(passage, tools)


def _best(actions: Iterator[Action], known: Mapping[str, str], *, decision: bool) -> Action | None:
    """The first of ``actions`` that can run once filled from ``known``, else the first one at all;
    a decision's queries without their trailing rule."""
    first = None
    for action in actions:
        if decision and "query" in action.args:
            action = action.model_copy(update={"args": {**action.args, "query": _without_rule(action.args["query"])}})
        filled = fill(action, known)
        if not filled.missing:
            return filled
        first = first or filled
    return first


def _prose_actions(text: str, tools: Mapping[str, ToolSpec]) -> Iterator[Action]:
    for code in _CODE.findall(text):
        if action := _code_action(code, tools, promql=True):
            yield action
    for url in _URL.findall(text):
        if action := _accepting(tools, {"url": url.rstrip(".,;:!?")}):
            yield action


def _block_actions(passage: _Passage, tools: Mapping[str, ToolSpec]) -> Iterator[Action]:
    for info, code in passage.blocks:
        query = _block_query(code) if info in _PROMQL_BLOCKS else ""
        if query and (action := _code_action(query, tools, promql=True)):
            yield action
        if info in _SHELL_BLOCKS:
            for line in _command_lines(code):
                if action := _code_action(line, tools, promql=False):
                    yield action


def _block_query(code: str) -> str:
    """A code block's first PromQL expression: its lines up to the first blank line, comments left
    out; "" for Prometheus output (``metric{…} 1`` lines)."""
    lines = [line for line in code.strip().split("\n\n")[0].splitlines() if not line.lstrip().startswith("#")]
    if any(_SAMPLE.match(line.strip()) for line in lines):
        return ""
    return "\n".join(lines).strip()


def _command_lines(code: str) -> Iterator[str]:
    """The commands of a shell or console block: with ``$ `` prompts only the prompted lines (the rest
    is output); continuation lines joined; comments left out. A variable the block sets to one safe
    word (``NAMESPACE="kube-etcd"``) is that word in the commands after it."""
    lines = code.replace("\\\n", " ").splitlines()
    prompted = any(line.lstrip().startswith("$ ") for line in lines)
    assigned: dict[str, str] = {}
    for line in lines:
        line = line.strip()
        if prompted and not line.startswith("$ "):
            continue
        line = line.removeprefix("$ ").strip()
        if (assignment := _ASSIGNMENT.fullmatch(line)) and _SAFE_VALUE.fullmatch(assignment["value"]):
            assigned[assignment["name"]] = assignment["value"]
        elif line and not line.startswith("#"):
            yield _VARIABLE.sub(lambda m: assigned.get(m["name"] or m["braced"], m.group(0)), line)


def _code_action(code: str, tools: Mapping[str, ToolSpec], *, promql: bool) -> Action | None:
    """The catalogue call ``code`` (a command or, with ``promql``, a query) is, placeholders kept as
    written; None when no tool accepts it."""
    code = _compact_placeholders(code.strip())
    if argv := _argv(code):
        if action := _accepting(tools, {"argv": _kubectl_verb_first(argv)}):
            return action
        if argv[:2] == ["promtool", "query"] and len(argv) == 5 and argv[2] in ("instant", "range"):
            code, promql = argv[4], True  # promtool query instant URL EXPR: the runbook's query is EXPR
    if promql and _PROMQL.match(code) and "`" not in code and not _NOT_A_SELECTOR.search(code):
        return _accepting(tools, {"query": code})
    return None


def _compact_placeholders(code: str) -> str:
    """``{{ $labels.namespace }}`` as one word (``{{$labels.namespace}}``), so that splitting a command
    into words keeps each placeholder whole."""
    return _PLACEHOLDER.sub(lambda m: re.sub(r"\s+", "", m.group(0)), code)


def _accepting(tools: Mapping[str, ToolSpec], args: dict[str, Any]) -> Action | None:
    """A call of the first catalogue tool whose schema accepts exactly ``args``, in the tool's mode."""
    for spec in tools.values():
        if spec.accepts(args):
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


def _kubectl_verb_first(argv: list[str]) -> list[str]:
    """``kubectl -n ns get pods`` as ``kubectl get pods -n ns``: the same command, in the order an
    allowlist of ``kubectl get`` … prefixes reads."""
    if argv[0] != "kubectl":
        return argv
    moved, rest = [], argv[1:]
    while rest and rest[0].startswith("-"):
        option = rest.pop(0)
        if option in _KUBECTL_GLOBAL_VALUED and rest:
            moved += [option, rest.pop(0)]
        elif option in _KUBECTL_GLOBAL_FLAGS or option.split("=", 1)[0] in _KUBECTL_GLOBAL_VALUED:
            moved.append(option)
        else:
            return argv
    return ["kubectl", *rest, *moved]


def _without_rule(query: str) -> str:
    return query if _LOGICAL.search(query) else _TRAILING_RULE.sub("", query)


def _resource(word: str) -> str:
    """The resource kind ``word`` names (``daemonset``, ``deploy``, ``pods``), or ""."""
    kind = canonical(word)
    return kind if kind in _RESOURCES else ""


def _usable(known: Mapping[str, str]) -> dict[str, str]:
    """``known`` by canonical name, without values that are not one safe word."""
    return {canonical(k): v for k, v in known.items() if _SAFE_VALUE.fullmatch(v)}


def _mapped(value: Any, f: Callable[[str], str]) -> Any:
    """A JSON value with ``f`` applied to every string in it."""
    if isinstance(value, str):
        return f(value)
    if isinstance(value, list):
        return [_mapped(v, f) for v in value]
    if isinstance(value, dict):
        return {k: _mapped(v, f) for k, v in value.items()}
    return value
