from __future__ import annotations

import pytest

from core.document import Block, parse, render, split_blocks
from core.runbooks import alert_heading, imperative, read_section, role_of, section_kind, sentences, strip_lead_in

RUNBOOK = """---
title: Disk filling up
weight: 3
---
# DiskFilling

<details>
<summary>Context</summary>

The disk of a node is filling up.

</details>

## Steps to resolve

1. Open the node dashboard.
    1. Do you see a steep rise in the last hour?
    1. Which directory grows? Check with `du -sh /var/*`.
1. If the log volume is full, rotate the logs.

```shell
logrotate -f /etc/logrotate.conf
```

> **Note:** rotating drops nothing older than a day.

!!! warning "Careful"
    Never delete files under /var/lib/postgresql.

| metric | meaning |
|---|---|
| node_filesystem_avail_bytes | free bytes |
"""


def test_markdown_becomes_blocks_with_nesting_code_tables_and_notes() -> None:
    parsed = parse(RUNBOOK)
    assert parsed.front_matter == {"title": "Disk filling up", "weight": 3}
    kinds = [(b.kind, b.level) for b in parsed.blocks]
    assert kinds == [
        ("heading", 1), ("paragraph", 0), ("heading", 2), ("item", 0), ("item", 1), ("item", 1), ("item", 0),
        ("code", 0), ("quote", 0), ("quote", 0), ("table", 0),
    ]  # fmt: skip
    assert parsed.blocks[4] == Block("item", "Do you see a steep rise in the last hour?", 1, ordered=True)
    assert parsed.blocks[7].text == "logrotate -f /etc/logrotate.conf" and parsed.blocks[7].info == "shell"
    assert [b.info for b in parsed.blocks[8:10]] == ["note", "warning"]
    assert parsed.blocks[10].text == "metric | meaning\nnode_filesystem_avail_bytes | free bytes"


def test_rendered_sections_parse_back_to_the_same_blocks_and_split_at_top_level() -> None:
    body = [b for b in parse(RUNBOOK).blocks if b.kind != "heading"]
    text = render(body)
    assert parse(text).blocks == body
    pieces = list(split_blocks(text))
    assert pieces[1].startswith("1. Open the node dashboard.") and "    1. Which directory" in pieces[1]
    assert all(parse(p).blocks for p in pieces)


def test_paragraphs_that_look_like_markup_stay_paragraphs() -> None:
    blocks = [Block("paragraph", "1. not a list"), Block("paragraph", "# not a heading"), Block("paragraph", "- x")]
    assert parse(render(blocks)).blocks == blocks


def test_roles_are_read_from_content() -> None:
    section = render([b for b in parse(RUNBOOK).blocks if b.kind != "heading"])
    found = read_section(section, ("Steps to resolve",))
    assert [(c.role, c.level) for c in found] == [
        ("check", 0),
        ("check", 0),
        ("decision", 1),
        ("check", 1),
        ("decision", 0),
        ("note", 0),
        ("note", 0),
    ]
    assert found[3].text == "Which directory grows? Check with `du -sh /var/*`."
    assert found[6].text == "Never delete files under /var/lib/postgresql."
    assert found[4].code == ("logrotate -f /etc/logrotate.conf",)


@pytest.mark.parametrize(
    ("text", "role"),
    [
        ("Etcd Request Duration - 99th Percentile", "caption"),
        ("Container_memory_usage_bytes Current memory usage in bytes.", "caption"),
        ("It can originate from Prometheus, Thanos Querier, or Thanos Ruler", "check"),
        ("This ClusterRole is provisioned during the Cluster Logging Operator Deployment", "check"),
        ("Now we have both ends of the scraping flow covered.", "narrative"),
        ("more detailed info - [PDF](https://example.com/a.pdf)", "reference"),
        ("See [the docs](https://example.com) for more.", "reference"),
        ("2021-03-04: the primary ran out of disk, fixed by failover", "reference"),
        ("Past incident: https://gitlab.com/gitlab-com/gl-infra/production/-/issues/1234", "reference"),
        ("Note: this drops the cache.", "note"),
        ("WARNING: do not restart both replicas at once.", "note"),
        ("Check if the application is performing normally", "decision"),
        ("If sessions are stuck idle in transaction, terminate them", "decision"),
        ("Then, restart the kubelet.", "action"),
        ("You should inspect the logs of the pod.", "check"),
        ("`up == 0` can be used to check the trend over time.", "check"),
        ("This can happen if prometheus did not manage to compact data.", "narrative"),
        ("Running out of inodes is often caused by many small files.", "narrative"),
        ("The default behavior is to read directly into the destination buffer.", "narrative"),
        ("Usually happens when specifying wrong pod taints or affinities.", "narrative"),
        ("It can happen under load; in this case, add a replica.", "check"),
        ("If it happens again, you can disable the exporter.", "decision"),
        ("401 Unauthorized or 403 Forbidden errors indicate an RBAC problem.", "narrative"),
        ("Mitigation will depend on what was found in the diagnosis section.", "narrative"),
        ("Note that a filesystem out of inodes may still have free space.", "note"),
        ("Checking the alert's job label should help with this.", "narrative"),
        ("In this case, you should expect logs like the following", "narrative"),
        ("A list of the storage systems with their capacity will be visible.", "narrative"),
        ("Export the NAMESPACE environment variable", "narrative"),
        ("For the following command, replace the $DAEMONPOD variable with your pod's name.", "narrative"),
        ("Cause: Requests hitting rate-limits", "narrative"),
        ("The cause can be on either the Prometheus side or the remote side.", "narrative"),
        ("Set the replicas of the deployment to 3.", "action"),
        ("You can temporarily patch it to set minAvailable to 0.", "action"),
        ("Troubleshoot why the drain fails.", "check"),
        ("Exec into each sbdb container on the master pods.", "check"),
        ("More space should be available now.", "narrative"),  # what the step before achieves
        ("Take the steps mentioned in mitigation", "reference"),
        ("Please look at the Troubleshooting section to resolve issue", "reference"),
        ("Use for this purpose the same diagnostic approaches as listed above.", "reference"),
        ("Restart the pods listed above.", "action"),
    ],
)
def test_what_is_not_a_step_is_recognised(text: str, role: str) -> None:
    assert role_of(text, "procedure") == role


def test_what_a_paragraph_says_after_its_step_qualifies_that_step() -> None:
    text = (
        "Determine which component triggered the alert. It can originate from Prometheus or Thanos Ruler. "
        "Then inspect its logs.\n\nThe exporter runs SQL on the local instance."
    )
    found = read_section(text, ("Diagnosis",))
    assert [(c.text, c.role) for c in found] == [
        ("Determine which component triggered the alert.", "check"),
        ("It can originate from Prometheus or Thanos Ruler.", "note"),
        ("Then inspect its logs.", "check"),
        ("The exporter runs SQL on the local instance.", "check"),  # a paragraph of its own: a step
    ]


def test_a_list_of_causes_names_no_steps_unless_an_item_says_what_to_do() -> None:
    text = (
        "Lag can be caused by a number of factors:\n\n**Network issues:**\n\n- Congestion on the node interface\n"
        "- Checking the router logs\n\n**Database issues:**\n\n- Long-running queries blocking replication\n\n"
        "Check the replication status.\n\n- Slow disks on the replicas"
    )
    found = read_section(text, ("Diagnosis",))
    assert [(c.text, c.role) for c in found if c.role != "caption"] == [
        ("Congestion on the node interface", "description"),
        ("Checking the router logs", "check"),
        ("Long-running queries blocking replication", "description"),
        ("Check the replication status.", "check"),
        ("Slow disks on the replicas", "check"),  # after a step, a list is no longer the causes'
    ]


def test_a_list_of_what_may_happen_is_no_procedure() -> None:
    text = (
        "Continuing to use runc may:\n\n- Block future cluster upgrades\n- Prevent access to newer features\n\n"
        "Check the runtime."
    )
    found = read_section(text, ("Diagnosis",))
    assert [(c.text, c.role) for c in found][1:] == [
        ("Block future cluster upgrades", "description"),
        ("Prevent access to newer features", "description"),
        ("Check the runtime.", "check"),
    ]


def test_abbreviations_do_not_end_a_sentence() -> None:
    assert sentences("Identify the root cause (e.g. Node pressure) and fix it. Then, i.e. Later, retry.") == [
        "Identify the root cause (e.g. Node pressure) and fix it.",
        "Then, i.e. Later, retry.",
    ]


def test_code_makes_the_line_before_it_or_the_heading_above_it_a_step() -> None:
    text = (
        "To see all nodes using runc via metrics:\n\n```bash\npromtool query instant http://p 'up'\n```\n\n"
        "Example output:\n\n```\ndefault_runtime = crun\n```\n\n"
        "### Step 2: Check the metrics endpoint\n\n```bash\ncurl -sS http://localhost:9187/metrics\n```\n\n"
        "### Background\n\n```\nsome output\n```\n"
    )
    found = read_section(text, ("Diagnosis",))
    assert [(c.text, c.role, len(c.code)) for c in found] == [
        ("To see all nodes using runc via metrics:", "check", 1),
        ("Example output:", "caption", 1),
        ("Check the metrics endpoint", "check", 1),
    ]
    # The heading a chunk starts under counts too; describing sections make no step of it.
    assert [c.text for c in read_section("```\nkubectl get pods\n```", ("Diagnosis", "Step 4: Inspect logs"))] == [
        "Inspect logs"
    ]
    assert read_section("```\nkubectl scale deploy/a --replicas=2\n```", ("Overview", "Scale the cluster")) == []


def test_describing_sections_give_only_imperative_steps() -> None:
    assert role_of("If the service runs fine, a ServiceMonitor may be wrong.", "description") == "description"
    assert role_of("Check the ServiceMonitor.", "description") == "check"
    assert role_of("app waits for the database", "procedure", item=True) == "check"
    assert role_of("app waits for the database", "description", item=True) == "description"


def test_section_kinds_and_alert_headings() -> None:
    assert section_kind(("KubeJobFailed", "Diagnosis")) == "procedure"
    assert section_kind(("Runbook",)) == "procedure" and section_kind(("Steps to resolve",)) == "procedure"
    assert section_kind(("Meaning",)) == "description" and section_kind(("Possible causes",)) == "cases"
    assert section_kind(("Changelog",)) == "other"
    assert alert_heading(("Group Name: kubernetes-apps", 'Alert Name: "KubeJobFailed"')) == "KubeJobFailed"
    assert alert_heading(("KubeJobFailed", "Diagnosis")) == "KubeJobFailed"
    assert alert_heading(("Steps to resolve", "Possible checks")) is None
    assert strip_lead_in("then, confirm the API answers") == "Confirm the API answers"


def test_an_instruction_said_with_a_modal_reads_as_an_imperative() -> None:
    assert imperative("You can open a shell on the node") == "Open a shell on the node"
    assert imperative("You can temporarily patch the PDB") == "Temporarily patch the PDB"
    assert imperative("You can usually see it in the logs") == "You can usually see it in the logs"
