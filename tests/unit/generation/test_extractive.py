from __future__ import annotations

import pytest

from core.types import Chunk, IncidentNode, NodeHit, Passage, Retrieval
from generation.extractive import ESCALATE, PERSISTS, RESOLVED, as_question, clean, plan_extractive
from generation.lint import lint
from generation.validation import validate


def chunk(ordinal: int, heading: str | tuple[str, ...], text: str, doc: str = "k8s/KubeletDown.md") -> Chunk:
    return Chunk(
        chunk_id=f"{doc}#{ordinal}",
        doc_id=doc,
        ordinal=ordinal,
        title="KubeletDown",
        heading_path=(heading,) if isinstance(heading, str) else heading,
        text=text,
    )


RUNBOOK = [
    chunk(0, "Meaning", "Prometheus cannot reach the kubelets."),
    chunk(
        1,
        "Diagnosis",
        "- Check node status with `kubectl get nodes`.\n\n- See [the docs](https://x) for more.\n\n"
        "```shell\n$ kubectl get events\n```\n\n- If you have SSH access, read the kubelet logs.\n\n"
        "> Note: the logs rotate hourly.\n\nKubelet Status Panel\n\n",
    ),
    chunk(2, "Mitigation", "Fix the node configuration and restart the kubelet."),
]


def retrieval(chunks: list[Chunk], nodes: tuple[NodeHit, ...] = ()) -> Retrieval:
    passages = tuple(Passage(chunk=c, score=1.0 / (i + 1)) for i, c in enumerate(chunks))
    return Retrieval(query="q", passages=passages, nodes=nodes)


def test_conditions_become_decisions_that_guard_what_they_say_to_do() -> None:
    flow = plan_extractive(retrieval([RUNBOOK[2], RUNBOOK[0], RUNBOOK[1]]))
    assert flow is not None
    assert [(s.id, s.type, s.text) for s in flow.steps] == [
        ("s1", "process", "Check node status with kubectl get nodes"),
        ("s2", "decision", "Do you have SSH access?"),
        ("s3", "process", "Read the kubelet logs"),
        ("s4", "terminal", f"Fix the node configuration and restart the kubelet ({PERSISTS})"),
    ]
    decision = flow.steps[1]
    assert decision.branches is not None and (decision.branches.yes, decision.branches.no) == ("s3", "s4")
    assert flow.steps[2].notes == ("The logs rotate hourly",)  # the note qualifies the step before it
    assert flow.see_also == ("See [the docs](https://x) for more.",)  # links are "see also", never steps
    validate(flow, {c.chunk_id for c in RUNBOOK})
    assert lint(flow) == []


def test_check_whether_a_healthy_state_puts_the_remedy_on_no() -> None:
    text = "1. Check if the application is performing normally.\n\n    1. Restart the application pods."
    flow = plan_extractive(retrieval([chunk(0, "Troubleshooting", text)]))
    assert flow is not None
    assert flow.steps[0].text == "Is the application performing normally?"
    assert flow.steps[0].branches is not None
    assert (flow.steps[0].branches.yes, flow.steps[0].branches.no) == ("s3", "s2")
    assert lint(flow) == []


def test_a_check_that_locates_the_fault_hands_it_on_and_a_last_question_can_resolve() -> None:
    text = "- Check whether etcd is degraded.\n\n- Inspect the API server logs.\n\n- Do you still see errors?"
    flow = plan_extractive(retrieval([chunk(0, "Diagnosis", text)]))
    assert flow is not None
    by_id = {s.id: s for s in flow.steps}
    assert by_id["s1"].branches is not None and (by_id["s1"].branches.yes, by_id["s1"].branches.no) == ("s4", "s2")
    assert by_id["s3"].branches is not None and (by_id["s3"].branches.yes, by_id["s3"].branches.no) == ("s4", "s5")
    assert by_id["s5"].text == RESOLVED
    validate(flow, {"k8s/KubeletDown.md#0"})
    assert lint(flow) == []


def test_conditions_that_add_nothing_make_no_question() -> None:
    text = (
        "If this alert fires, check the Thanos Ruler queue.\n\n"
        "- Is the queue full?\n\n- If so, raise the queue capacity.\n\n"
        "- If the ClusterRole is absent you can recreate it from the release manifest.\n\n"
        "- If OOMKilled: Raise the memory limit.\n\n"
        "- Inspect the bindings."
    )
    flow = plan_extractive(retrieval([chunk(0, "Diagnosis", text)]))
    assert flow is not None
    assert [(s.id, s.type, s.text) for s in flow.steps] == [
        ("s1", "process", "Check the Thanos Ruler queue"),
        ("s2", "decision", "Is the queue full?"),
        ("s3", "process", "Raise the queue capacity"),
        ("s4", "decision", "Is the ClusterRole absent?"),
        ("s5", "process", "Recreate it from the release manifest"),
        ("s6", "decision", "Is it OOMKilled?"),
        ("s7", "process", "Raise the memory limit"),
        ("s8", "terminal", f"Inspect the bindings ({PERSISTS})"),
    ]
    by_id = {s.id: s for s in flow.steps}
    assert by_id["s2"].branches is not None and (by_id["s2"].branches.yes, by_id["s2"].branches.no) == ("s3", "s4")
    assert by_id["s4"].branches is not None and (by_id["s4"].branches.yes, by_id["s4"].branches.no) == ("s5", "s6")
    assert by_id["s6"].branches is not None and (by_id["s6"].branches.yes, by_id["s6"].branches.no) == ("s7", "s8")
    assert lint(flow) == []


def test_the_runbooks_escalation_sentence_is_the_terminal() -> None:
    text = (
        "1. Check the replication slots.\n\n1. Drop the stale slot.\n\n1. If that fails, escalate to the DBA on call."
    )
    flow = plan_extractive(retrieval([chunk(0, "Procedure", text)]))
    assert flow is not None and flow.steps[-1].type == "terminal"
    assert flow.steps[-1].text == "If that fails, escalate to the DBA on call"


def test_an_escalation_for_when_nothing_helped_is_a_note_of_the_last_step() -> None:
    text = (
        "1. Check the replication slots.\n\n1. Inspect the WAL size.\n\n1. Drop the stale slot.\n\n"
        "If you cannot resolve the issue, open a support case with the vendor."
    )
    flow = plan_extractive(retrieval([chunk(0, "Procedure", text)]))
    assert flow is not None
    assert [(s.type, s.text) for s in flow.steps] == [
        ("process", "Check the replication slots"),
        ("process", "Inspect the WAL size"),
        ("terminal", f"Drop the stale slot ({PERSISTS})"),
    ]
    assert flow.steps[-1].notes == ("If you cannot resolve the issue, open a support case with the vendor",)
    assert lint(flow) == []


def test_a_condition_that_ends_the_runbook_is_its_last_step_as_written() -> None:
    text = (
        "- Check the MDS cache usage.\n\n- Inspect the client sessions.\n\n- Review the MDS logs.\n\n"
        "- If only one PV causes the load, raise the MDS CPU."
    )
    flow = plan_extractive(retrieval([chunk(0, "Diagnosis", text)]))
    assert flow is not None
    assert [(s.type, s.text) for s in flow.steps][-2:] == [
        ("process", "Review the MDS logs"),
        ("terminal", f"If only one PV causes the load, raise the MDS CPU ({PERSISTS})"),
    ]
    assert RESOLVED not in [s.text for s in flow.steps]  # no question whose both answers end the workflow
    assert lint(flow) == []


def test_a_condition_without_a_step_that_ends_the_runbook_is_its_last_step_as_written() -> None:
    text = (
        "- Check the sbdb container logs.\n\n- Inspect the ovn-controller logs.\n\n"
        "- Verify the traffic with tcpdump.\n\n"
        "- If no traffic flows to the southbound database, the infrastructure is likely at fault."
    )
    flow = plan_extractive(retrieval([chunk(0, "Diagnosis", text)]))
    assert flow is not None
    assert [s.type for s in flow.steps] == ["process", "process", "process", "terminal"]
    assert flow.steps[-1].text == (
        f"If no traffic flows to the southbound database, the infrastructure is likely at fault ({PERSISTS})"
    )
    assert lint(flow) == []


def test_a_condition_without_a_step_before_the_runbooks_escalation_is_a_step_as_written() -> None:
    text = (
        "- Check the collector logs.\n\n- If a NetworkPolicy was recently applied, it may block the scrape.\n\n"
        "If the API server is not reachable at all, follow the disaster recovery documentation."
    )
    flow = plan_extractive(retrieval([chunk(0, "Diagnosis", text)]))
    assert flow is not None
    assert [(s.type, s.text) for s in flow.steps] == [
        ("process", "Check the collector logs"),
        ("process", "If a NetworkPolicy was recently applied, it may block the scrape"),
        ("terminal", "If the API server is not reachable at all, follow the disaster recovery documentation"),
    ]
    assert lint(flow) == []


def test_a_question_is_the_first_sentence_of_its_item_and_the_rest_qualifies_it() -> None:
    text = (
        "1. Check the pool settings.\n\n1. Check whether a deployment just increased the number of replicas. "
        "Each replica opens its own pool, so 40 pods need 400 connections.\n\n1. Raise max_connections."
    )
    flow = plan_extractive(retrieval([chunk(0, "Diagnosis", text)]))
    assert flow is not None
    question = flow.steps[1]
    assert (question.type, question.text) == ("decision", "Did a deployment just increase the number of replicas?")
    assert question.notes == ("Each replica opens its own pool, so 40 pods need 400 connections",)
    assert lint(flow) == []


def test_a_step_that_hands_over_to_its_code_names_the_command() -> None:
    text = (
        "- Check the DB size.\n\n- Run the following command in all etcd pods:\n\n```\n$ etcdctl defrag\n```\n\n"
        "- Clear these flags with\n\n```\nceph osd unset noup\n```\n\n"
        "- Inspect the pods using\n\n```\n" + "x" * 100 + "\n```\n\n- Validate the endpoint status."
    )
    flow = plan_extractive(retrieval([chunk(0, "Diagnosis", text)]))
    assert flow is not None
    assert [s.text for s in flow.steps][1:4] == [
        "Run etcdctl defrag in all etcd pods",
        "Clear these flags with ceph osd unset noup",
        "Inspect the pods using",  # too long to read as part of the step: the card shows it as the action
    ]


def test_an_escalation_cut_off_before_its_list_of_conditions_is_a_note_of_the_last_step() -> None:
    text = (
        "1. Check the VM status.\n\n1. Check the PVC binding.\n\n1. Migrate the VM to another node.\n\n"
        "Escalate to the cluster administrator if:"
    )
    flow = plan_extractive(retrieval([chunk(0, "Procedure", text)]))
    assert flow is not None
    assert flow.steps[-1].text == f"Migrate the VM to another node ({PERSISTS})"
    assert flow.steps[-1].notes == ("Escalate to the cluster administrator if",)


def test_a_file_of_many_alerts_answers_with_the_section_of_the_alert_in_question() -> None:
    doc = "kubernetes/runbook.md"
    chunks = [
        chunk(0, ("Group: apps", "KubeJobFailed"), "- *Action*: Check the job with `kubectl describe job`.", doc),
        chunk(1, ("Group: apps", "KubeletDown"), "1. Check the kubelet service.\n\n1. Restart the kubelet.", doc),
    ]
    node = IncidentNode(name="KubeletDown", chunk_ids=(f"{doc}#1",), doc_ids=(doc,))
    flow = plan_extractive(retrieval([chunks[1], chunks[0]], (NodeHit(node=node, score=1.0, via="named"),)))
    assert flow is not None and flow.title == "KubeletDown"
    assert [s.text for s in flow.steps] == ["Check the kubelet service", "Restart the kubelet", ESCALATE]
    flow = plan_extractive(retrieval([chunks[0], chunks[1]]))
    assert flow is not None and flow.steps[0].text == "Check the job with kubectl describe job"


def test_only_the_leading_document_is_used() -> None:
    other = chunk(0, "Mitigation", "Restart the database primary now.", doc="db/Pg.md")
    flow = plan_extractive(retrieval([RUNBOOK[1], other, RUNBOOK[2]]))
    assert flow is not None and {c.doc_id for s in flow.steps for c in s.citations} == {"k8s/KubeletDown.md"}


def test_long_runbooks_are_sampled_across_their_length() -> None:
    text = "\n\n".join(f"- Check component number {i} carefully" for i in range(30))
    flow = plan_extractive(retrieval([chunk(0, "Diagnosis", text)]), max_steps=5)
    assert flow is not None and len(flow.steps) == 5  # the runbook's last step ends it
    assert flow.steps[0].text.endswith("number 0 carefully") and "number 29 carefully" in flow.steps[-1].text


def test_a_question_cut_off_from_what_it_says_to_do_is_left_out() -> None:
    text = "\n\n".join(f"- If the pool {i} is paused, unpause pool {i}." for i in range(6))
    flow = plan_extractive(retrieval([chunk(0, "Diagnosis", text)]), max_steps=3)
    assert flow is not None
    assert [s.text for s in flow.steps] == [
        "Is the pool 0 paused?",
        "Unpause pool 0",
        f"If the pool 2 is paused, unpause pool 2 ({PERSISTS})",
    ]
    assert lint(flow) == []


def test_an_alternative_way_to_do_a_step_is_shown_with_it() -> None:
    text = (
        "- List the storage nodes.\n\n- For each node, check the interface MTUs.\n\n"
        "- Alternatively, use Prometheus.\n\n- Configure the MTU on the switches."
    )
    flow = plan_extractive(retrieval([chunk(0, "Diagnosis", text)]))
    assert flow is not None
    assert [s.text for s in flow.steps] == [
        "List the storage nodes",
        "For each node, check the interface MTUs",
        f"Configure the MTU on the switches ({PERSISTS})",
    ]
    assert flow.steps[1].notes == ("Alternatively, use Prometheus",)


def test_a_runbook_that_only_describes_the_alert_gives_confirm_and_escalate() -> None:
    flow = plan_extractive(retrieval([RUNBOOK[0]]))
    assert flow is not None
    assert [(s.type, s.text) for s in flow.steps] == [
        ("process", "Confirm what the alert reports: Prometheus cannot reach the kubelets"),
        ("decision", "Is the condition still present?"),
        ("terminal", ESCALATE),
        ("terminal", RESOLVED),
    ]
    assert lint(flow) == []


def test_a_runbook_without_steps_or_description_gives_no_workflow() -> None:
    links = chunk(0, "References", "- [Kubelet docs](https://x)\n\n- [Node docs](https://y)")
    assert plan_extractive(retrieval([links])) is None
    assert plan_extractive(Retrieval(query="q", passages=())) is None


@pytest.mark.parametrize(
    ("condition", "question"),
    [
        ("the API is reachable", "Is the API reachable?"),
        ("sessions are stuck idle in transaction", "Are sessions stuck idle in transaction?"),
        ("you have SSH access", "Do you have SSH access?"),
        ("a dependency of the API, such as etcd, is degraded", "Is a dependency of the API, such as etcd, degraded?"),
        ("Do you see errors?", "Do you see errors?"),
        ("the health check returns 503", "Does the health check return 503?"),
        ("the error rates look normal", "Do the error rates look normal?"),
        ("a pod cannot unmount storage", "Can a pod not unmount storage?"),
        ("CrashLoopBackOff", "Is it CrashLoopBackOff?"),
        ("the issue stems from expired credentials", "Does the issue stem from expired credentials?"),
    ],
)  # fmt: skip
def test_conditions_read_as_yes_no_questions(condition: str, question: str) -> None:
    assert as_question(condition) == question


def test_clean_makes_steps_readable() -> None:
    assert clean("check the **[pod](http://x)** with `kubectl   get`:") == "Check the pod with kubectl get"
    assert clean("if `cl_waiting` > 0, scale <deployment>") == "If cl_waiting > 0, scale <deployment>"
    # A step is a checklist item: no full stop at its end, unless it ends an abbreviation.
    assert clean("Restart the pod.") == "Restart the pod"
    assert clean("Check the disks, memory, etc.") == "Check the disks, memory, etc."
    assert clean("Wait...") == "Wait..."
