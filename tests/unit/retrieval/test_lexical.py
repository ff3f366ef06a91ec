from __future__ import annotations

from retrieval.lexical import expand_identifiers, query_terms


def test_identifiers_are_split_and_stop_words_dropped() -> None:
    assert query_terms("How do I triage KubeAPIDown?") == ["triage", "kubeapidown", "kube", "api", "down"]


def test_expansion_keeps_the_original_text_first() -> None:
    assert expand_identifiers("etcdMembersDown fired") == "etcdMembersDown fired\netcd Members Down"
    assert expand_identifiers("plain words") == "plain words"


def test_numbers_survive_and_punctuation_goes() -> None:
    assert query_terms('exit code 137; "OOMKilled"') == ["exit", "code", "137", "oomkilled", "oom", "killed"]
