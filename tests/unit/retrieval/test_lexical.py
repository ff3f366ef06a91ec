from __future__ import annotations

from core.types import IncidentNode
from retrieval.lexical import expand_identifiers, query_terms, runbook_about, runbook_names


def test_identifiers_are_split_and_stop_words_dropped() -> None:
    assert query_terms("How do I triage KubeAPIDown?") == ["triage", "kubeapidown", "kube", "api", "down"]


def test_expansion_keeps_the_original_text_first() -> None:
    assert expand_identifiers("etcdMembersDown fired") == "etcdMembersDown fired\netcd Members Down"
    assert expand_identifiers("plain words") == "plain words"


def test_the_numbers_of_an_identifier_are_words_of_their_own() -> None:
    assert query_terms("CollectorHigh403ForbiddenResponseRate") == [
        "collectorhigh403forbiddenresponserate", "collector", "high", "403", "forbidden", "response", "rate"
    ]  # fmt: skip
    assert query_terms("NooBaaSystemCapacityWarning85")[-2:] == ["warning", "85"]
    assert query_terms("ens5 is down") == ["ens5", "down"]  # a plain word with a digit is no identifier


def test_a_negated_state_is_a_term_of_its_own() -> None:
    # 'not' is a stop word: without 'notready', NotReady would search as 'ready' (as KubeNodeReadinessFlapping).
    assert query_terms("node NotReady") == ["node", "notready", "ready"]
    assert "notready" in query_terms("KubeNodeNotReady")
    assert query_terms("NotificationsFailing") == ["notificationsfailing", "notifications", "failing"]


def test_numbers_survive_and_punctuation_goes() -> None:
    assert query_terms('exit code 137; "OOMKilled"') == ["exit", "code", "137", "oomkilled", "oom", "killed"]


def test_runbook_names_are_distinct_by_their_normal_form() -> None:
    node = IncidentNode(name="KubePodCrashLooping", aliases=("Kube Pod Crash Looping", "PodCrashLoop"))
    names = runbook_names("k8s/KubePodCrashLooping.md", "Kube Pod Crash Looping", [node])
    assert names == ("Kube Pod Crash Looping", "PodCrashLoop")


def test_runbook_names_of_a_document_without_incidents_are_its_title_and_file_name() -> None:
    assert runbook_names("howto/disk-full.md", "When the disk fills up", []) == ("When the disk fills up", "disk-full")


def test_runbook_about_is_each_description_once() -> None:
    nodes = [IncidentNode(name=n, description=d) for n, d in (("A", "pods crash"), ("B", "pods crash"), ("C", ""))]
    assert runbook_about(nodes) == "pods crash"
