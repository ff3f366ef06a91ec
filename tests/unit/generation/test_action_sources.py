"""Where a step's check comes from (its sentence, its list item, the code block after it), how
placeholders are filled from known values or named as missing, and the entities a question names."""

from __future__ import annotations

import pytest

from connectors.tools import catalogue
from core.settings import ToolSettings
from core.types import Action, Branches, Chunk, Citation, Step, Workflow
from generation.actions import (
    action_for,
    attach_actions,
    canonical,
    checks_in,
    entities_of,
    fill,
    needs,
    shown,
)

TOOLS = catalogue(ToolSettings(prometheus_url="http://prom:9090"))
CITE = (Citation(doc_id="rb.md", chunk_id="rb.md#0"),)


def runbook(text: str) -> dict[str, Chunk]:
    chunk = Chunk(chunk_id="rb.md#0", doc_id="rb.md", ordinal=0, title="Rb", heading_path=("Diagnosis",), text=text)
    return {chunk.chunk_id: chunk}


def one_step(text: str, kind: str = "terminal") -> Workflow:
    links = {"decision": {"branches": Branches(yes="s2", no="s2")}}.get(kind, {})
    steps = [Step(id="s1", type=kind, text=text, citations=CITE, **links)]  # type: ignore[arg-type]
    if kind == "decision":
        steps.append(Step(id="s2", type="terminal", text="Resolved", citations=CITE))
    return Workflow(title="Rb", steps=tuple(steps))


def action_of(text: str, chunk_text: str, known: dict[str, str] | None = None, kind: str = "terminal") -> Action | None:
    return attach_actions(one_step(text, kind), runbook(chunk_text), TOOLS, known).steps[0].action


TREND = "Check the trend of scrape failures over time"


@pytest.mark.parametrize(
    ("step_text", "chunk_text", "args"),
    [
        # The step's sentence, within a longer paragraph.
        (
            "Up == 0 query can be used to check the trend over time",
            "The target list shows errors. `up == 0` query can be used to check the trend over time.",
            {"query": "up == 0"},
        ),
        # A PromQL code block right after the step's paragraph.
        (TREND, f"{TREND}:\n\n```promql\n# failing targets\nup == 0\n```", {"query": "up == 0"}),
        # A console block in the step's list item: the prompted line is the command, the rest its output.
        (
            TREND,
            f"1. {TREND}:\n\n    ```console\n    $ kubectl get pods -n monitoring\n    NAME   READY\n    ```",
            {"argv": ["kubectl", "get", "pods", "-n", "monitoring"]},
        ),
        # A code block after a paragraph of the step's list item.
        (
            TREND,
            f"1. {TREND}.\n\n    The exporter may be slow.\n\n    ```\n    kubectl get pods -n monitoring\n    ```\n\n"
            "2. Read the release notes.",
            {"argv": ["kubectl", "get", "pods", "-n", "monitoring"]},
        ),
        # Another way to do the same ("Alternatively, …") is the step's.
        (
            "Open the Targets page and list the targets that are down",
            "- Open the Targets page and list the targets that are down.\n"
            "- Alternatively, query `up == 0` in the Metrics page.\n- Check the network.",
            {"query": "up == 0"},
        ),
        # A variable the block sets is its value in the commands after it.
        (
            TREND,
            f'{TREND}:\n\n```shell\nNAMESPACE="kube-etcd"\nkubectl logs -n $NAMESPACE -lapp=etcd etcd\n```',
            {"argv": ["kubectl", "logs", "-n", "kube-etcd", "-lapp=etcd", "etcd"]},
        ),
        # A block without a language, a command continued over two lines, options before the verb.
        (
            TREND,
            f"{TREND}.\n\n```\nkubectl -n monitoring \\\n  get pods\n```",
            {"argv": ["kubectl", "get", "pods", "-n", "monitoring"]},
        ),
    ],
)
def test_a_steps_check_is_in_its_sentence_or_the_code_block_after_it(
    step_text: str, chunk_text: str, args: dict
) -> None:
    action = action_of(step_text, chunk_text)
    assert action is not None and action.args == args and action.mode == "read" and not action.missing


def test_a_check_of_another_paragraph_or_item_is_not_the_steps() -> None:
    text = (
        "- Look at the dashboard for the service.\n"
        "- Count the failing targets: `count(up == 0)`.\n\n"
        "Read the release notes of the exporter.\n\n"
        "```\nkubectl get pods -n monitoring\n```\n"
    )
    assert action_of("Look at the dashboard for the service", text) is None
    counted = action_of("Count the failing targets", text)
    assert counted is not None and counted.args == {"query": "count(up == 0)"}
    # The code block after the last paragraph is that paragraph's.
    notes = action_of("Read the release notes of the exporter", text)
    assert notes is not None and notes.args == {"argv": ["kubectl", "get", "pods", "-n", "monitoring"]}


def test_code_right_under_a_heading_is_the_check_of_the_step_the_heading_names() -> None:
    chunk = Chunk(
        chunk_id="rb.md#0",
        doc_id="rb.md",
        ordinal=0,
        title="Rb",
        heading_path=("Diagnosis", "Step 4: Inspect logs"),
        text="```bash\nkubectl logs --namespace cnpg-system -l app=cnpg --tail=200\n```\n\nLook for timeouts.",
    )
    steps = attach_actions(one_step("Inspect logs"), {chunk.chunk_id: chunk}, TOOLS).steps
    action = steps[0].action
    assert action is not None and action.args["argv"][:2] == ["kubectl", "logs"] and not action.missing
    # The sentence after the code is another step: the code is not its check.
    assert attach_actions(one_step("Look for timeouts"), {chunk.chunk_id: chunk}, TOOLS).steps[0].action is None


@pytest.mark.parametrize(
    "code",
    [
        "kubectl get pods -n <namespace> <pod-name>",
        "kubectl get pods -n $NAMESPACE $POD",
        "kubectl get pods -n ${NS} ${POD_NAME}",
        "kubectl get pods -n {{ $labels.namespace }} {{ $labels.pod }}",
        "kubectl get pods -n {{ .Labels.namespace }} {{.Labels.pod}}",
        "kubectl get pods -n {namespace} {pod}",
        "kubectl get pods -n <my-namespace> <podname>",
    ],
)
def test_every_placeholder_form_is_filled_from_known_values(code: str) -> None:
    known = {"namespace": "shop", "pod_name": "orders-7d9f"}
    action = action_for(f"Look at it: `{code}`", TOOLS, known)
    assert action is not None and action.missing == ()
    assert action.args == {"argv": ["kubectl", "get", "pods", "-n", "shop", "orders-7d9f"]}
    unknown = action_for(f"Look at it: `{code}`", TOOLS)
    assert unknown is not None and unknown.missing == ("namespace", "pod")
    assert needs(unknown) == "needs: namespace, pod"


def test_placeholders_in_queries_are_filled_and_a_missing_one_is_named() -> None:
    text = 'Restarts: `increase(kube_pod_container_status_restarts_total{namespace="{{ $labels.namespace }}"}[1h])`'
    filled = action_for(text, TOOLS, {"namespace": "shop"})
    assert filled is not None
    assert filled.args == {"query": 'increase(kube_pod_container_status_restarts_total{namespace="shop"}[1h])'}
    missing = action_for(text, TOOLS, {"pod": "x-1"})
    assert (
        missing is not None and missing.missing == ("namespace",) and "{{$labels.namespace}}" in missing.args["query"]
    )


@pytest.mark.parametrize("value", ["--kubeconfig=/tmp/evil", "shop prod", 'shop"} or vector(1) #', "", "-n"])
def test_values_that_are_not_one_plain_word_are_never_used(value: str) -> None:
    action = action_for("Look: `kubectl get pods -n <namespace>`", TOOLS, {"namespace": value})
    assert action is not None and action.missing == ("namespace",)
    assert action.args["argv"] == ["kubectl", "get", "pods", "-n", "<namespace>"]
    assert shown(action) == "kubectl get pods -n <namespace> (needs: namespace)"


def test_a_runnable_check_is_preferred_to_one_missing_a_value() -> None:
    text = "Compare `kubectl get pods -n <namespace>` with `kubectl get nodes`."
    assert action_for(text, TOOLS) == Action(tool="command", args={"argv": ["kubectl", "get", "nodes"]}, mode="read")
    both = action_for(text, TOOLS, {"namespace": "shop"})
    assert both is not None and both.args["argv"] == ["kubectl", "get", "pods", "-n", "shop"]


def test_steps_with_an_action_get_its_placeholders_filled() -> None:
    own = Action(tool="command", args={"argv": ["kubectl", "logs", "$POD"]}, mode="read")
    step = Step(id="s1", type="terminal", text="Read the logs", citations=CITE, action=own)
    flow = Workflow(title="t", steps=(step,))
    assert attach_actions(flow, {}, TOOLS).steps[0].action == own.model_copy(update={"missing": ("pod",)})
    filled = attach_actions(flow, {}, TOOLS, {"pod": "api-1"}).steps[0].action
    assert filled is not None and filled.args == {"argv": ["kubectl", "logs", "api-1"]} and not filled.missing


def test_process_steps_run_a_query_as_written_and_decisions_without_their_rule() -> None:
    text = "Check whether any target is down with `up == 0`."
    process = action_of("Check whether any target is down", text, kind="process")
    decision = action_of("Is any target down?", text, kind="decision")
    assert process is not None and process.args == {"query": "up == 0"}
    assert decision is not None and decision.args == {"query": "up"}


def test_checks_in_lists_every_check_of_a_chunk_with_its_placeholders() -> None:
    text = (
        "## Diagnosis\n\n`up == 0` shows the targets that are down.\n\n"
        "```bash\n$ kubectl -n $NAMESPACE describe pod $POD | less\n$ kubectl -n $NAMESPACE logs $POD\n```\n\n"
        "| Query | Meaning |\n| --- | --- |\n| `rate(errors_total[5m])` | errors |\n\n"
        "Run `rm -rf /` and `oc get pods`."
    )
    found = [(a.tool, a.args, a.missing) for a in checks_in(text, TOOLS)]
    assert found == [
        ("prometheus_query", {"query": "up == 0"}, ()),
        ("command", {"argv": ["kubectl", "logs", "$POD", "-n", "$NAMESPACE"]}, ("pod", "namespace")),
        ("prometheus_query", {"query": "rate(errors_total[5m])"}, ()),
    ]


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("namespace", "namespace"),
        ("NAMESPACE", "namespace"),
        ("my-namespace", "namespace"),
        ("NS", "namespace"),
        ("pod-name", "pod"),
        ("pod_name", "pod"),
        ("POD", "pod"),
        ("podname", "pod"),
        ("NODE_NAME", "node"),
        ("deploy", "deployment"),
        ("svc", "service"),
        ("instance", "instance"),
        ("name", "name"),
    ],
)
def test_placeholder_and_label_names_are_canonical(name: str, key: str) -> None:
    assert canonical(name) == key


@pytest.mark.parametrize(
    ("question", "entities"),
    [
        ("Pods in namespace payments keep restarting", {"namespace": "payments"}),
        ('Alert with namespace="payments" and pod="api-7d9f"', {"namespace": "payments", "pod": "api-7d9f"}),
        ("kubectl get pods -n payments shows CrashLoopBackOff", {"namespace": "payments"}),
        ("errors with --namespace=payments", {"namespace": "payments"}),
        ("OOMKilled in the payments namespace", {"namespace": "payments"}),
        ("pod foo-123 is OOMKilled in payments namespace", {"pod": "foo-123", "namespace": "payments"}),
        ("payments/foo-abc is pending", {"namespace": "payments", "pod": "foo-abc"}),
        ("node ip-10-0-1-2.ec2.internal is NotReady", {"node": "ip-10-0-1-2.ec2.internal"}),
        ("deploy/checkout has no ready replicas", {"deployment": "checkout"}),
        ("deployment `checkout` rollout stuck", {"deployment": "checkout"}),
        ("service payments-api returns 503", {"service": "payments-api"}),
        (
            "job node-exporter target down on instance 10.0.0.5:9100",
            {"job": "node-exporter", "instance": "10.0.0.5:9100"},
        ),
        ("Some node-exporter daemonset pods are not scheduled", {"daemonset": "node-exporter"}),
        ("The pod keeps restarting and the node is not ready", {}),
        ("A deployment is stuck; the service account is missing; for instance, the job failed", {}),
        ("read/write errors and CPU/memory pressure, see https://example.com/a-b", {}),
    ],
)
def test_entities_a_question_names(question: str, entities: dict[str, str]) -> None:
    assert entities_of(question) == entities


def test_known_values_reach_only_the_placeholders_of_their_name() -> None:
    action = Action(tool="prometheus_query", args={"query": 'up{job="$JOB", instance="<instance>"}'}, mode="read")
    filled = fill(action, {"job": "node", "alertname": "TargetDown"})
    assert filled.args == {"query": 'up{job="node", instance="<instance>"}'} and filled.missing == ("instance",)


@pytest.mark.parametrize(
    ("code", "known", "argv"),
    [
        (
            "kubectl describe daemonset $NAME -n $NAMESPACE",
            {"daemonset": "node-exporter", "namespace": "mon"},
            ["kubectl", "describe", "daemonset", "node-exporter", "-n", "mon"],
        ),
        ("kubectl rollout status deploy/<name>", {"deployment": "api"}, ["kubectl", "rollout", "status", "deploy/api"]),
        ("kubectl describe pv $PV", {"persistentvolume": "pvc-8a1c"}, ["kubectl", "describe", "pv", "pvc-8a1c"]),
    ],
)
def test_a_generic_name_after_a_resource_kind_is_that_resources_name(
    code: str, known: dict[str, str], argv: list[str]
) -> None:
    action = action_for(f"`{code}`", TOOLS, known)
    assert action is not None and action.args == {"argv": argv} and not action.missing
    unfilled = action_for(f"`{code}`", TOOLS)
    assert unfilled is not None and set(unfilled.missing) <= {
        "daemonset",
        "deployment",
        "persistentvolume",
        "namespace",
    }
