from __future__ import annotations

from core.types import Chunk, Passage, Retrieval
from generation.extractive import clean, plan_extractive
from generation.validation import validate


def chunk(ordinal: int, heading: str, text: str, doc: str = "k8s/KubeletDown.md") -> Chunk:
    return Chunk(
        chunk_id=f"{doc}#{ordinal}",
        doc_id=doc,
        ordinal=ordinal,
        title="KubeletDown",
        heading_path=(heading,),
        text=text,
    )


RUNBOOK = [
    chunk(0, "Meaning", "Prometheus cannot reach the kubelets."),
    chunk(
        1,
        "Diagnosis",
        "- Check node status with `kubectl get nodes`.\n- See [the docs](https://x) for more.\n"
        "```shell\n$ kubectl get events\n```\n- If you have SSH access, read the kubelet logs.\n",
    ),
    chunk(2, "Mitigation", "Fix the node configuration and restart the kubelet."),
]


def retrieval(chunks: list[Chunk]) -> Retrieval:
    passages = tuple(Passage(chunk=c, score=1.0 / (i + 1)) for i, c in enumerate(chunks))
    return Retrieval(query="q", passages=passages)


def test_steps_follow_the_runbook_with_a_decision_and_a_terminal() -> None:
    flow = plan_extractive(retrieval([RUNBOOK[2], RUNBOOK[0], RUNBOOK[1]]))
    assert flow is not None
    assert [(s.type, s.text) for s in flow.steps] == [
        ("process", "Check node status with kubectl get nodes."),
        ("decision", "If you have SSH access, read the kubelet logs."),
        ("terminal", "Fix the node configuration and restart the kubelet."),
    ]
    assert flow.steps[1].branches is not None and flow.steps[1].branches.yes == "s3"
    assert [c.chunk_id for s in flow.steps for c in s.citations] == ["k8s/KubeletDown.md#1"] * 2 + [
        "k8s/KubeletDown.md#2"
    ]
    validate(flow, {c.chunk_id for c in RUNBOOK})


def test_only_the_leading_document_is_used() -> None:
    other = chunk(0, "Mitigation", "Restart the database primary now.", doc="db/Pg.md")
    flow = plan_extractive(retrieval([RUNBOOK[1], other, RUNBOOK[2]]))
    assert flow is not None and {c.doc_id for s in flow.steps for c in s.citations} == {"k8s/KubeletDown.md"}


def test_long_runbooks_are_sampled_across_their_length() -> None:
    text = "\n".join(f"- Check component number {i} carefully" for i in range(30))
    flow = plan_extractive(retrieval([chunk(0, "Diagnosis", text)]), max_steps=5)
    assert flow is not None and len(flow.steps) == 5
    assert flow.steps[0].text.endswith("number 0 carefully") and flow.steps[-1].text.endswith("number 29 carefully")


def test_a_runbook_without_steps_gives_no_workflow() -> None:
    assert plan_extractive(retrieval([RUNBOOK[0]])) is None
    assert plan_extractive(Retrieval(query="q", passages=())) is None


def test_clean_makes_steps_readable() -> None:
    assert clean("check the **[pod](http://x)** with `kubectl   get`:") == "Check the pod with kubectl get"
    assert clean("if `cl_waiting` > 0, scale <deployment>") == "If cl_waiting > 0, scale <deployment>"
