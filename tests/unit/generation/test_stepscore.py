"""The project's STEPScore against the benchmark's reference scorer on fixed cases."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from generation import stepscore
from tests.conftest import BENCH

CASES = [
    {"id": "c1", "unanswerable": False, "gold_steps": [
        {"type": "process", "text": "Check the status of the API server targets in the Prometheus UI"},
        {"type": "decision", "text": "Is the API unresponsive for you too (kubectl cluster-info)?"},
        {"type": "process", "text": "Investigate kube-proxy logs"},
        {"type": "terminal", "text": "If the API is unreachable, follow the disaster recovery documentation"},
    ]},
    {"id": "c2", "unanswerable": False, "gold_steps": [
        {"type": "process", "text": "Check daemonset status with kubectl describe daemonset"},
        {"type": "terminal", "text": "Set a proper priority class for important daemonsets"},
    ]},
    {"id": "c3", "unanswerable": True, "gold_steps": []},
    {"id": "c4", "unanswerable": True, "gold_steps": []},
    {"id": "c5", "unanswerable": False, "gold_steps": [{"type": "process", "text": "Restart the kubelet"}]},
]  # fmt: skip
PREDS = {
    "c1": {"steps": [
        {"type": "process", "text": "Look at the API server targets in Prometheus"},
        {"type": "process", "text": "Read kube-proxy logs on the node"},
        {"type": "decision", "text": "Does kubectl cluster-info answer?"},
        {"type": "terminal", "text": "Follow the disaster recovery documentation"},
        {"type": "process", "text": "Order pizza for the team"},
    ], "abstain": False},
    "c2": {"steps": [{"type": "terminal", "text": "Give key daemonsets the system-node-critical priority class"}]},
    "c3": {"steps": [], "abstain": True},
    "c4": {"steps": [{"type": "process", "text": "Reboot everything"}], "abstain": False},
    "c5": {"steps": [], "abstain": True},
}  # fmt: skip


@pytest.fixture(scope="module")
def reference():
    path = BENCH / "stepscore.py"
    if not path.exists():
        pytest.skip(f"the reference scorer is not at {path}")
    spec = importlib.util.spec_from_file_location("reference_stepscore", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["reference_stepscore"] = module
    spec.loader.exec_module(module)
    return module


def ours(similarity, threshold: float) -> dict:
    results = []
    for case in CASES:
        pred = PREDS[case["id"]]
        abstained = pred.get("abstain", not pred["steps"])
        results.append(
            stepscore.score_case(
                pred["steps"],
                case["gold_steps"],
                similarity,
                threshold,
                abstained=abstained,
                unanswerable=case["unanswerable"],
            )
        )
    return stepscore.aggregate(results)


KEYS = ("f1", "precision", "recall", "hard_f1", "ordered_f1", "no_answer_accuracy", "false_abstain_rate", "overall_f1")


def test_lexical_scores_equal_the_reference(reference) -> None:
    theirs, _ = reference.evaluate(CASES, PREDS, reference.LexicalBackend())
    mine = ours(stepscore.lexical_similarity, stepscore.THRESHOLD["lexical"])
    for key in (*KEYS, "type_accuracy"):
        assert mine[key] == pytest.approx(theirs["all"][key], abs=1e-9), key
    assert 0 < mine["overall_f1"] < 1


def test_minilm_scores_equal_the_reference(reference, model_cache: Path) -> None:
    import asyncio

    import numpy as np

    from retrieval.embedding import OnnxEmbedder

    embedder = OnnxEmbedder(model_cache)

    def similarity(preds, golds):
        vectors = asyncio.run(embedder.embed(list(preds) + list(golds)))
        return np.asarray(vectors[: len(preds)] @ vectors[len(preds) :].T, dtype=np.float64)

    theirs, _ = reference.evaluate(CASES, PREDS, reference.MiniLMBackend())
    mine = ours(similarity, stepscore.THRESHOLD["minilm"])
    for key in KEYS:
        assert mine[key] == pytest.approx(theirs["all"][key], abs=1e-4), key


def test_fx_is_the_many_to_one_form_without_threshold() -> None:
    same = {"type": "process", "text": "restart the pod"}
    result = stepscore.score_case(
        [same, same], [same], stepscore.lexical_similarity, 0.3, abstained=False, unanswerable=False
    )
    assert result["fx_f1"] == pytest.approx(1.0)
    assert result["f1"] == pytest.approx(2 * 0.5 * 1 / 1.5)
