"""STEPScore, exactly as ``../shared/bench/stepscore.py`` defines it, plus FlowXpert's published form.

Pure functions over a similarity matrix; the caller supplies the similarity (MiniLM cosine, or
token F1 as the lexical fallback) and names it in the report.

* headline: similarities below τ count 0; maximum-weight one-to-one matching (Hungarian);
  P = Σ/|pred|, R = Σ/|gold|, F1.  * ordered: the best order-preserving alignment instead.
* fx (FlowXpert): no threshold, many-to-one: P = mean over pred of max sim, R = mean over gold.
* an unanswerable case scores 1 if the system abstained, else 0; abstaining on an answerable one 0.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

THRESHOLD = {"lexical": 0.30, "minilm": 0.55}
STEP_TYPES = ("process", "decision", "terminal")
METRICS = ("precision", "recall", "f1", "hard_f1", "ordered_precision", "ordered_recall", "ordered_f1", "fx_f1")

Similarity = Callable[[Sequence[str], Sequence[str]], np.ndarray]
"""(pred texts, gold texts) → matrix of similarities in [0, 1]."""

_STOP = set(
    """a an the and or of to in on for with by at from as is are be been being it its this that these
    those if then else than so such via into onto over under out up any all each every some no not only
    also just your you we our they them their can could should would may might must will shall do does
    did done have has had using use used e g eg i ie etc there here which what when where who how why""".split()
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def _stem(t: str) -> str:
    for suf in ("ations", "ation", "ings", "ing", "ies", "ied", "ed", "es", "s", "ly"):
        if len(t) > len(suf) + 2 and t.endswith(suf):
            return t[: -len(suf)] + "y" if suf in ("ies", "ied") else t[: -len(suf)]
    return t


def _tokens(text: str) -> list[str]:
    words = re.findall(r"[A-Za-z0-9]+", _CAMEL.sub(" ", text).lower())
    return [_stem(t) for t in words if t not in _STOP and (len(t) > 1 or t.isdigit())]


def token_f1(a: str, b: str) -> float:
    """The lexical fallback similarity: F1 of stemmed content tokens."""
    ta, tb = Counter(_tokens(a)), Counter(_tokens(b))
    common = sum((ta & tb).values())
    if not common:
        return 0.0
    p, r = common / sum(ta.values()), common / sum(tb.values())
    return 2 * p * r / (p + r)


def lexical_similarity(preds: Sequence[str], golds: Sequence[str]) -> np.ndarray:
    return np.array([[token_f1(p, g) for g in golds] for p in preds], dtype=np.float64)


def _f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def match_unordered(weights: np.ndarray) -> list[tuple[int, int, float]]:
    """Maximum-weight one-to-one matching; zero-weight pairs dropped; sorted by gold index."""
    # Imported here: scipy.optimize takes a quarter of a second, and every CLI command imports this module.
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(weights, maximize=True)
    pairs = [(int(i), int(j), float(weights[i, j])) for i, j in zip(rows, cols, strict=True) if weights[i, j] > 0]
    return sorted(pairs, key=lambda p: p[1])


def match_ordered(weights: np.ndarray) -> list[tuple[int, int, float]]:
    """Maximum-weight order-preserving alignment (weighted LCS, no gap penalty)."""
    n, m = weights.shape
    dp = np.zeros((n + 1, m + 1))
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            best = max(dp[i - 1, j], dp[i, j - 1])
            w = weights[i - 1, j - 1]
            if w > 0 and dp[i - 1, j - 1] + w > best:
                best = dp[i - 1, j - 1] + w
            dp[i, j] = best
    pairs, i, j = [], n, m
    while i > 0 and j > 0:
        w = weights[i - 1, j - 1]
        if w > 0 and abs(dp[i, j] - (dp[i - 1, j - 1] + w)) < 1e-9:
            pairs.append((i - 1, j - 1, float(w)))
            i, j = i - 1, j - 1
        elif dp[i - 1, j] >= dp[i, j - 1]:
            i -= 1
        else:
            j -= 1
    return pairs[::-1]


def score_case(
    pred: Sequence[dict[str, Any]],
    gold: Sequence[dict[str, Any]],
    similarity: Similarity,
    threshold: float,
    *,
    abstained: bool,
    unanswerable: bool,
) -> dict[str, Any]:
    """One case's scores; ``pred``/``gold`` are ``{"type", "text"}`` steps with non-empty text."""
    result: dict[str, Any] = {"abstain": abstained, "unanswerable": unanswerable, "type_accuracy": None}
    if unanswerable:
        return result | dict.fromkeys(METRICS, 1.0 if abstained else 0.0)
    if abstained or not pred or not gold:
        return result | dict.fromkeys(METRICS, 0.0)
    sims = np.clip(np.asarray(similarity([p["text"] for p in pred], [g["text"] for g in gold])), 0.0, 1.0)
    weights = np.where(sims >= threshold, sims, 0.0)
    unordered, ordered = match_unordered(weights), match_ordered(weights)
    soft, osoft = sum(w for *_, w in unordered), sum(w for *_, w in ordered)
    p, r = soft / len(pred), soft / len(gold)
    hp, hr = len(unordered) / len(pred), len(unordered) / len(gold)
    op, orr = osoft / len(pred), osoft / len(gold)
    fxp, fxr = float(sims.max(axis=1).mean()), float(sims.max(axis=0).mean())
    typed = [(pred[i]["type"], gold[j]["type"]) for i, j, _ in unordered if pred[i]["type"] in STEP_TYPES]
    return result | {
        "precision": p, "recall": r, "f1": _f1(p, r), "hard_f1": _f1(hp, hr),
        "ordered_precision": op, "ordered_recall": orr, "ordered_f1": _f1(op, orr),
        "fx_precision": fxp, "fx_recall": fxr, "fx_f1": _f1(fxp, fxr),
        "type_accuracy": sum(a == b for a, b in typed) / len(typed) if typed else None,
    }  # fmt: skip


def aggregate(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Macro averages as the reference scorer computes them (answerable cases for the F1s)."""
    answerable = [r for r in results if not r["unanswerable"]]
    unanswerable = [r for r in results if r["unanswerable"]]
    out: dict[str, Any] = {"n": len(results), "n_answerable": len(answerable), "n_unanswerable": len(unanswerable)}
    for key in METRICS:
        out[key] = _mean([r[key] for r in answerable])
    out["type_accuracy"] = _mean([r["type_accuracy"] for r in answerable if r["type_accuracy"] is not None])
    out["false_abstain_rate"] = _mean([float(r["abstain"]) for r in answerable])
    out["no_answer_accuracy"] = _mean([float(r["abstain"]) for r in unanswerable])
    out["overall_f1"] = _mean([r["f1"] for r in results])
    out["overall_ordered_f1"] = _mean([r["ordered_f1"] for r in results])
    return out


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None
