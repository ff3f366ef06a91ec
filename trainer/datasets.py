"""Training data from what people judged and what the knowledge base says, in trl's formats.

Pure functions: judged answers in, rows out. Every prompt is the serving prompt
(``generation.prompts``) rebuilt from the retrieval the answer was planned from, and every
completion is the Planner's reply in the served reply format (``WORKFLOW_SCHEMA`` JSON, or the numbered
lines of ``generation.lines``) citing the prompt's numbered sources, so what is trained is exactly
what is served. Rows are conversational (message lists).

* ``dpo`` pairs ``{prompt, chosen, rejected}``: 👍 ≻ 👎 answers to the same or an equivalent question
  (same leading runbook); a correction ≻ the answer it corrects; a successful executor run ≻ a
  failed one; a rich-context ≻ a poor-context workflow (FlowXpert), to fill up scarce human pairs;
* ``kto`` rows ``{prompt, completion, label}`` from answers with a net vote;
* ``sft`` rows ``{prompt, completion}`` from accepted and corrected workflows and the knowledge base;
* ``grpo`` prompts with ``gold_steps`` and ``n_sources``, the columns ``trainer.rewards`` reads;
* ``scorer`` pairs for the Scorer's DPO: the verdict rating the better workflow higher ≻ the other, for
  the human and richness pairs and for corrupted copies of what people accepted (``corrupted``).

Rows are deduplicated, capped per question and split train/eval by question key, so that no
question (nor an equivalent one) is on both sides. Everything is deterministic for a seed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from core.types import Answer, Retrieval, ToolSpec, Workflow, normalise_name
from generation.editing import chained
from generation.extractive import plan_extractive
from generation.lines import write_lines
from generation.prompts import (
    SCORE_CRITERIA,
    WORKFLOW_SCHEMA,
    ReplyFormat,
    planner_messages,
    scorer_messages,
    select_context,
    shown_sources,
)
from generation.stepscore import THRESHOLD, lexical_similarity, score_case
from trainer.store import Feedback, Interaction

Row = dict[str, Any]
POOR_RICHNESS = (0.5, 0.25)  # degraded contexts of synthesised pairs: the leading runbook's first chunks only
KTO_RATIO = 4 / 3  # trl's KTO advice: desirable to undesirable examples between 1:1 and 4:3
_STEP = WORKFLOW_SCHEMA["properties"]["steps"]
_TEXT_LIMIT = _STEP["items"]["properties"]["text"]["maxLength"]
_ID_LIMIT = _STEP["items"]["properties"]["id"]["maxLength"]
_SOURCES_LIMIT = _STEP["items"]["properties"]["sources"]["maxItems"]
_TITLE_LIMIT = WORKFLOW_SCHEMA["properties"]["title"]["maxLength"]


@dataclass(frozen=True)
class Judged:
    """One recorded answer with everyone's feedback on it, as training reads it."""

    interaction_id: int
    retrieval: Retrieval
    workflow: Workflow | None
    votes: int
    corrections: tuple[Workflow, ...] = ()

    @property
    def key(self) -> str:
        return question_key(self.retrieval)


@dataclass(frozen=True)
class Preference:
    """``chosen`` is better than ``rejected`` as an answer to the prompt built from ``retrieval``."""

    retrieval: Retrieval
    chosen: Workflow
    rejected: Workflow
    origin: str  # votes | correction | execution | richness | corruption

    @property
    def key(self) -> str:
        return question_key(self.retrieval)


@dataclass(frozen=True)
class Example:
    """One workflow for the prompt built from ``retrieval``: good (``label``) or bad."""

    retrieval: Retrieval
    workflow: Workflow
    label: bool
    origin: str  # accepted | corrected | downvoted | knowledge

    @property
    def key(self) -> str:
        return question_key(self.retrieval)


@dataclass(frozen=True)
class Datasets:
    """Each dataset's train and eval rows, the held-back cases for the gate, and the snapshot hash."""

    train: dict[str, list[Row]]
    eval: dict[str, list[Row]]
    heldout_cases: list[Row]
    snapshot: str

    def sizes(self) -> dict[str, dict[str, int]]:
        return {name: {"train": len(self.train[name]), "eval": len(self.eval[name])} for name in self.train}


def question_key(retrieval: Retrieval) -> str:
    """Equivalent questions share a key: the leading runbook, or the normalised text when nothing was found."""
    if retrieval.passages:
        return "doc:" + retrieval.passages[0].chunk.doc_id
    return "query:" + normalise_name(retrieval.query)


def judged(interaction: Interaction, feedback: Sequence[Feedback]) -> Judged | None:
    """The answer as training reads it, or None when its context was not kept whole."""
    try:
        retrieval = Retrieval.model_validate(interaction.context.get("retrieval"))
        answer = Answer.model_validate(interaction.answer)
        corrections = tuple(Workflow.model_validate(f.corrected) for f in feedback if f.corrected)
    except ValidationError:
        return None
    # A person who flags a step without voting found something wrong: that counts as a 👎.
    votes = sum(f.vote or (-1 if f.step_flags else 0) for f in feedback)
    return Judged(interaction.id, retrieval, answer.workflow, votes, corrections)


def vote_pairs(answers: Sequence[Judged]) -> list[Preference]:
    """Every 👍 answer ≻ every 👎 answer with the same key, for the 👎 answer's prompt."""
    groups: dict[str, list[Judged]] = defaultdict(list)
    for a in answers:
        if a.workflow is not None and a.votes:
            groups[a.key].append(a)
    pairs = []
    for group in groups.values():
        liked = [a for a in group if a.votes > 0]
        for bad in (a for a in group if a.votes < 0):
            pairs += [Preference(bad.retrieval, good.workflow, bad.workflow, "votes") for good in liked]  # type: ignore[arg-type]
    return pairs


def correction_pairs(answers: Sequence[Judged]) -> list[Preference]:
    """An engineer's corrected workflow ≻ the answer it corrects."""
    return [
        Preference(a.retrieval, fixed, a.workflow, "correction")
        for a in answers
        if a.workflow is not None
        for fixed in a.corrections
    ]


def richness_pair(retrieval: Retrieval) -> Preference | None:
    """FlowXpert's synthesised pair: the extractive workflow from the context the prompt shows ≻ the one
    from a poorer context (fewer of the leading runbook's chunks; failing that, the next runbook)."""
    rich = plan_extractive(select_context(retrieval, 1.0))
    if rich is None:
        return None
    poorer = [select_context(retrieval, richness) for richness in POOR_RICHNESS] + [_without_lead(retrieval)]
    for context in poorer:
        poor = plan_extractive(context)
        if poor is not None and _texts(poor) != _texts(rich):
            return Preference(retrieval, rich, poor, "richness")
    return None


def corrupted(workflow: Workflow, other: Workflow, rng: random.Random) -> dict[str, Workflow]:
    """Worse copies of ``workflow``, by kind: its steps shuffled, its first decision (else its middle
    step) dropped, and ``other``'s steps (another runbook's) in its place; each a chain (``chained``).
    A kind that would equal ``workflow`` is left out."""
    steps = list(workflow.steps)
    shuffled = steps[:]
    while len({s.text for s in steps}) > 1 and [s.text for s in shuffled] == [s.text for s in steps]:
        rng.shuffle(shuffled)
    decisions = [i for i, s in enumerate(steps) if s.type == "decision"]
    drop = decisions[0] if decisions else len(steps) // 2
    # Another runbook's steps keep this workflow's citations by position: they look as grounded as a
    # planner's wrong answer does, which cites the numbers of the sources it was shown.
    elsewhere = [s.model_copy(update={"citations": steps[i].citations if i < len(steps) else ()})
                 for i, s in enumerate(other.steps)]  # fmt: skip
    kinds = {"shuffled": shuffled, "decision_dropped": steps[:drop] + steps[drop + 1 :], "other_runbook": elsewhere}
    worse = {kind: chained(workflow.title, copy) for kind, copy in kinds.items() if copy}
    return {kind: w for kind, w in worse.items() if _texts(w) != _texts(workflow)}


def corruption_pairs(examples: Sequence[Example], seed: int) -> list[Preference]:
    """The Scorer's synthesised pairs: each accepted or corrected workflow ≻ its corrupted copies
    (``corrupted``; the other runbook is the next example's), so that it learns order, completeness and
    grounding from what people accepted."""
    rng = random.Random(seed)
    pairs = []
    for n, example in enumerate(examples):
        other = examples[(n + 1) % len(examples)].workflow
        for worse in corrupted(example.workflow, other, rng).values():
            pairs.append(Preference(example.retrieval, example.workflow, worse, "corruption"))
    return pairs


def _without_lead(retrieval: Retrieval) -> Retrieval:
    lead = retrieval.passages[0].chunk.doc_id
    return retrieval.model_copy(update={"passages": tuple(p for p in retrieval.passages if p.chunk.doc_id != lead)})


def _texts(workflow: Workflow) -> list[str]:
    return [s.text for s in workflow.steps]


def labelled(answers: Sequence[Judged]) -> list[Example]:
    """KTO's unpaired labels: an answer with a net 👍 is desirable, a net 👎 undesirable."""
    return [
        Example(a.retrieval, a.workflow, a.votes > 0, "accepted" if a.votes > 0 else "downvoted")
        for a in answers
        if a.workflow is not None and a.votes
    ]


def demonstrations(answers: Sequence[Judged]) -> list[Example]:
    """What to imitate: corrected workflows, and answers with a net 👍 that nobody corrected."""
    shown = []
    for a in answers:
        shown += [Example(a.retrieval, fixed, True, "corrected") for fixed in a.corrections]
        if a.workflow is not None and a.votes > 0 and not a.corrections:
            shown.append(Example(a.retrieval, a.workflow, True, "accepted"))
    return shown


def knowledge_example(retrieval: Retrieval) -> Example | None:
    """The extractive workflow for a question built from the knowledge base."""
    workflow = plan_extractive(select_context(retrieval, 1.0))
    return None if workflow is None else Example(retrieval, workflow, True, "knowledge")


def planner_reply(workflow: Workflow, retrieval: Retrieval, reply_format: ReplyFormat = "json") -> str | None:
    """The workflow as the Planner writes it for this retrieval's prompt, or None when the format cannot
    hold it (too many steps, long ids). Citations become the prompt's source numbers; texts are cut
    to the format's length."""
    if reply_format == "lines":
        return write_lines(workflow, shown_sources(retrieval, 1.0, "lines").passages)
    if len(workflow.steps) > _STEP["maxItems"] or any(len(s.id) > _ID_LIMIT for s in workflow.steps):
        return None
    numbers = {p.chunk.chunk_id: n for n, p in enumerate(select_context(retrieval, 1.0).passages, 1)}
    steps = [
        {
            "id": s.id,
            "type": s.type,
            "text": _cut(s.text, _TEXT_LIMIT),
            "next": s.next,
            "yes": s.branches.yes if s.branches else None,
            "no": s.branches.no if s.branches else None,
            "sources": sorted({numbers[c.chunk_id] for c in s.citations if c.chunk_id in numbers})[:_SOURCES_LIMIT],
        }
        for s in workflow.steps
    ]
    return json.dumps({"title": _cut(workflow.title, _TITLE_LIMIT), "steps": steps}, ensure_ascii=False)


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


def _assistant(content: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": content}]


def dpo_row(pair: Preference, tools: Sequence[ToolSpec] = (), reply_format: ReplyFormat = "json") -> Row | None:
    chosen = planner_reply(pair.chosen, pair.retrieval, reply_format)
    rejected = planner_reply(pair.rejected, pair.retrieval, reply_format)
    if chosen is None or rejected is None or chosen == rejected:
        return None
    prompt = planner_messages(pair.retrieval, tools=tools, reply_format=reply_format)
    return {"prompt": prompt, "chosen": _assistant(chosen), "rejected": _assistant(rejected)}


def kto_row(example: Example, tools: Sequence[ToolSpec] = (), reply_format: ReplyFormat = "json") -> Row | None:
    reply = planner_reply(example.workflow, example.retrieval, reply_format)
    if reply is None:
        return None
    return {
        "prompt": planner_messages(example.retrieval, tools=tools, reply_format=reply_format),
        "completion": _assistant(reply),
        "label": example.label,
    }


def sft_row(example: Example, tools: Sequence[ToolSpec] = (), reply_format: ReplyFormat = "json") -> Row | None:
    reply = planner_reply(example.workflow, example.retrieval, reply_format)
    if reply is None:
        return None
    prompt = planner_messages(example.retrieval, tools=tools, reply_format=reply_format)
    return {"prompt": prompt, "completion": _assistant(reply)}


def grpo_row(example: Example, tools: Sequence[ToolSpec] = (), reply_format: ReplyFormat = "json") -> Row:
    """A GRPO prompt with the columns ``trainer.rewards`` reads (``reply_format`` tells it how to parse)."""
    return {
        "prompt": planner_messages(example.retrieval, tools=tools, reply_format=reply_format),
        "gold_steps": [{"type": s.type, "text": s.text} for s in example.workflow.steps],
        "n_sources": len(shown_sources(example.retrieval, 1.0, reply_format).passages),
        "reply_format": reply_format,
    }


def verdict(workflow: Workflow, reference: Workflow, retrieval: Retrieval) -> dict[str, Any]:
    """The Scorer's reply (``SCORER_SCHEMA``) a careful reviewer would give ``workflow``, judged against
    ``reference`` (the better workflow for the same question): grounded by its cited steps, complete
    by how much of the reference it covers, ordered by how much of that coverage keeps the reference's
    order (STEPScore's ordered F1 over its F1); actionable and safe are not told apart here."""
    retrieved = {p.chunk.chunk_id for p in retrieval.passages}
    cited = sum(any(c.chunk_id in retrieved for c in s.citations) for s in workflow.steps) / len(workflow.steps)
    pred = [{"type": s.type, "text": s.text} for s in workflow.steps]
    gold = [{"type": s.type, "text": s.text} for s in reference.steps]
    scored = score_case(pred, gold, lexical_similarity, THRESHOLD["lexical"], abstained=False, unanswerable=False)
    ratings = dict.fromkeys(SCORE_CRITERIA, 4)
    ratings["grounded"] = 1 + round(4 * cited)
    ratings["complete"] = 1 + round(4 * float(scored["recall"]))
    f1 = float(scored["f1"])
    ratings["ordered"] = 1 + round(4 * float(scored["ordered_f1"]) / f1) if f1 > 0 else 1
    reasons = []
    if ratings["grounded"] < 5:
        reasons.append("some steps cite no retrieved source")
    if ratings["complete"] < 5:
        reasons.append("it leaves out steps the runbook gives")
    if ratings["ordered"] < 5:
        reasons.append("its steps are not in the runbook's order")
    return {"reasons": reasons, **ratings}  # in SCORER_SCHEMA's order: what is trained is what is served


def scorer_rows(pair: Preference) -> list[Row]:
    """Two Scorer pairs per preference: for each workflow, its own verdict ≻ the other workflow's."""
    good = verdict(pair.chosen, pair.chosen, pair.retrieval)
    bad = verdict(pair.rejected, pair.chosen, pair.retrieval)
    if good == bad:
        return []
    rows = []
    for workflow, right, wrong in ((pair.chosen, good, bad), (pair.rejected, bad, good)):
        rows.append(
            {
                "prompt": scorer_messages(pair.retrieval, workflow),
                "chosen": _assistant(json.dumps(right, ensure_ascii=False)),
                "rejected": _assistant(json.dumps(wrong, ensure_ascii=False)),
            }
        )
    return rows


def heldout_case(example: Example) -> Row:
    """An accepted or corrected answer as an ``opsflow eval`` case (the gate's held-back set)."""
    digest = hashlib.sha256(_canonical([example.retrieval.query, _texts(example.workflow)]).encode()).hexdigest()
    return {
        "id": f"held-{digest[:12]}",
        "query": example.retrieval.query,
        "gold_steps": [{"type": s.type, "text": s.text} for s in example.workflow.steps],
        "doc_ids": example.retrieval.doc_ids()[:1],
        "unanswerable": False,
    }


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


Keyed = tuple[str, Row]
"""A row with the question key it belongs to."""


def dedupe(rows: Iterable[Keyed]) -> list[Keyed]:
    """Identical rows once (the first key seen), in a canonical order."""
    unique: dict[str, Keyed] = {}
    for key, row in rows:
        unique.setdefault(_canonical(row), (key, row))
    return [unique[c] for c in sorted(unique)]


def resolve_labels(rows: Iterable[Keyed]) -> list[Keyed]:
    """KTO rows judged both ways: the majority label wins, a tie drops the completion."""
    tally: dict[str, list[Keyed]] = defaultdict(list)
    for key, row in rows:
        tally[_canonical({k: v for k, v in row.items() if k != "label"})].append((key, row))
    kept = []
    for same in tally.values():
        score = sum(1 if row["label"] else -1 for _, row in same)
        if score:
            key, row = same[0]
            kept.append((key, {**row, "label": score > 0}))
    return dedupe(kept)


def cap(rows: Sequence[Keyed], per_key: int, rng: random.Random) -> list[Keyed]:
    """At most ``per_key`` rows of any one question, picked at random."""
    groups: dict[str, list[Keyed]] = defaultdict(list)
    for keyed in rows:
        groups[keyed[0]].append(keyed)
    kept = []
    for key in sorted(groups):
        group = groups[key]
        kept += _at_most(group, per_key, rng)
    return kept


def balance_labels(rows: Sequence[Keyed], rng: random.Random) -> list[Keyed]:
    """Fewer of the commoner KTO label, so neither outweighs the other by more than ``KTO_RATIO``."""
    good = [r for r in rows if r[1]["label"]]
    bad = [r for r in rows if not r[1]["label"]]
    if not good or not bad:
        return list(rows)
    limit = math.ceil(KTO_RATIO * min(len(good), len(bad)))
    return [*_at_most(good, limit, rng), *_at_most(bad, limit, rng)]


def _at_most(rows: list[Keyed], n: int, rng: random.Random) -> list[Keyed]:
    return rows if len(rows) <= n else rng.sample(rows, n)


def held_back(keys: Iterable[str], fraction: float, seed: int) -> set[str]:
    """The question keys for evaluation: those whose seeded hash falls below ``fraction`` (stable as data
    grows), and at least one when there are two or more keys."""
    ranked = sorted(set(keys), key=lambda k: _unit(seed, k))
    chosen = {k for k in ranked if _unit(seed, k) < fraction}
    if not chosen and len(ranked) >= 2:
        chosen = {ranked[0]}
    return chosen


def _unit(seed: int, key: str) -> float:
    return int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:12], 16) / 16**12


@dataclass(frozen=True)
class BuildConfig:
    """How rows are selected; see ``TrainSettings`` for what each knob means."""

    seed: int = 0
    eval_fraction: float = 0.2
    min_pairs: int = 32
    max_per_question: int = 8
    tools: tuple[ToolSpec, ...] = ()  # the deployment's tool catalogue: the serving prompt lists it too
    reply_format: ReplyFormat = "json"  # the served backend's (generation.planner.reply_format_for)


def build(
    answers: Sequence[Judged],
    knowledge: Sequence[Retrieval] = (),
    execution: Sequence[Preference] = (),
    cfg: BuildConfig = BuildConfig(),
) -> Datasets:
    """Every dataset from the judged answers, the knowledge-base questions' retrievals and the executor's
    preference pairs; synthesised richness pairs only top up the human pairs to ``cfg.min_pairs``."""
    human = vote_pairs(answers) + correction_pairs(answers) + list(execution)
    # Rows are rendered with the serving prompt, which lists the deployment's tools.
    dpo, kto, sft, grpo = (
        functools.partial(r, tools=cfg.tools, reply_format=cfg.reply_format)
        for r in (dpo_row, kto_row, sft_row, grpo_row)
    )
    human_rows = _rows(human, dpo)
    synthesised = [p for p in map(richness_pair, knowledge) if p is not None]
    wanted = max(0, cfg.min_pairs - len(human_rows))
    rows: dict[str, list[Keyed]] = {
        "dpo": human_rows + _rows(synthesised, dpo)[:wanted],
        "kto": resolve_labels(_rows(labelled(answers), kto)),
        "sft": _rows(demonstrations(answers), sft) + _rows(_knowledge(knowledge), sft),
        "grpo": _rows(demonstrations(answers) + _knowledge(knowledge), grpo),
        "scorer": [
            (p.key, row)
            for p in human + synthesised + corruption_pairs(demonstrations(answers), cfg.seed)
            for row in scorer_rows(p)
        ],
    }
    keys = {key for keyed in rows.values() for key, _ in keyed}
    held = held_back(keys, cfg.eval_fraction, cfg.seed)
    train: dict[str, list[Row]] = {}
    evaluation: dict[str, list[Row]] = {}
    for name, keyed in rows.items():
        rng = random.Random(f"{cfg.seed}:{name}")
        kept = cap(dedupe(keyed), cfg.max_per_question, rng)
        if name == "kto":
            kept = balance_labels(kept, rng)
        rng.shuffle(kept)
        train[name] = [row for key, row in kept if key not in held]
        evaluation[name] = [row for key, row in kept if key in held]
    heldout = [heldout_case(e) for e in demonstrations(answers) if e.key in held]
    cases = [case for _, case in dedupe(("", c) for c in heldout)]
    snapshot = hashlib.sha256(_canonical({"train": train, "eval": evaluation, "cases": cases}).encode()).hexdigest()
    return Datasets(train, evaluation, cases, snapshot[:16])


def _rows(items: Iterable[Preference | Example], render: Callable[[Any], Row | None]) -> list[Keyed]:
    return [(item.key, row) for item in items if (row := render(item)) is not None]


def _knowledge(retrievals: Iterable[Retrieval]) -> list[Example]:
    return [e for e in map(knowledge_example, retrievals) if e is not None]
