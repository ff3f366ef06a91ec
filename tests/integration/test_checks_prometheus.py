"""Workflow checks against a real Prometheus (the Debian binary) scraping a loopback metrics endpoint:
query tools return real values, a decision takes the branch they call for, and ``opsflow checks``
does it all from the command line on the sample runbooks, and runs the benchmark's TargetDown
runbook's ``up == 0`` against a target that is down."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bot.app import open_knowledge
from bot.cli import main
from bot.executor import Executor
from bot.ingest import ingest
from connectors.tools import Toolbox
from core.settings import Settings, ToolSettings
from core.types import Action, Branches, Citation, Step, Workflow
from tests.conftest import BENCH, make_settings
from tests.promstack import MetricsEndpoint, Server, metrics_endpoint, prometheus
from trainer.store import RecordStore

REQUESTS = "nginx_ingress_controller_requests"


def _counting(metrics: MetricsEndpoint, stop: threading.Event) -> None:
    """Request counters going up 7 failures per 93 successes, as a busy ingress would."""
    ok = failed = 0
    while not stop.is_set():
        ok, failed = ok + 93, failed + 7
        metrics.set(REQUESTS, ok, status="200", ingress="shop")
        metrics.set(REQUESTS, failed, status="503", ingress="shop")
        stop.wait(0.5)


def _query(url: str, expr: str) -> list[Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}", timeout=5) as response:
        return json.loads(response.read())["data"]["result"]


def _closed_port() -> str:
    """``127.0.0.1:PORT`` where nothing listens: a scrape target that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


DOWN = _closed_port()


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Prometheus with a few scrapes of the test metrics in it, and a target that is down."""
    stop = threading.Event()
    with metrics_endpoint() as metrics:
        metrics.set("opsflow_error_ratio", 0.07, service="checkout")
        metrics.set("opsflow_error_ratio", 0.01, service="search")
        counter = threading.Thread(target=_counting, args=(metrics, stop), daemon=True)
        counter.start()
        try:
            targets = [metrics.target, DOWN]
            with prometheus(tmp_path_factory.mktemp("prometheus"), scrape_targets=targets) as server:
                deadline = time.monotonic() + 40
                # Targets are handed over ~5 s after start; rate() needs two scrapes.
                while not _query(server.url, f"rate({REQUESTS}[1m])") and time.monotonic() < deadline:
                    time.sleep(0.5)
                while not _query(server.url, "up == 0") and time.monotonic() < deadline:
                    time.sleep(0.5)
                assert _query(server.url, "opsflow_error_ratio"), server.log()[-2000:]
                yield server
        finally:
            stop.set()
            counter.join(timeout=5)


@pytest.fixture
def toolbox(prom: Server) -> Toolbox:
    return Toolbox(ToolSettings(prometheus_url=prom.url, step_timeout_s=5))


def query(expr: str, tool: str = "prometheus_query", **args: Any) -> Action:
    return Action(tool=tool, args={"query": expr, **args}, mode="read")


async def test_instant_queries_return_the_scraped_values(toolbox: Toolbox) -> None:
    result = await toolbox.call(query("opsflow_error_ratio"))
    assert result.status == "ok" and result.data is not None
    assert sorted(result.data["values"]) == [0.01, 0.07]
    assert "opsflow_error_ratio{instance=" in result.summary and 'service="checkout"} 0.07' in result.summary
    ratio = await toolbox.call(query(f'sum(rate({REQUESTS}{{status=~"5.."}}[1m])) / sum(rate({REQUESTS}[1m]))'))
    assert ratio.status == "ok" and ratio.data is not None
    assert ratio.data["values"][0] == pytest.approx(0.07, abs=0.005)


async def test_range_queries_give_each_series_latest_value_and_spread(toolbox: Toolbox) -> None:
    result = await toolbox.call(
        query('opsflow_error_ratio{service="checkout"}', "prometheus_range_query", minutes=5, step_s=1)
    )
    assert result.status == "ok" and result.data is not None
    assert result.data["result_type"] == "matrix" and result.data["values"] == [0.07]
    assert "min 0.07, max 0.07" in result.summary


async def test_empty_results_bad_queries_and_a_down_server_are_values(toolbox: Toolbox) -> None:
    empty = await toolbox.call(query("opsflow_metric_that_does_not_exist"))
    assert empty.status == "no_data" and empty.summary == "no series matched"
    bad = await toolbox.call(query("sum(rate(x[5m]"))
    assert bad.status == "error" and "bad_data" in bad.summary
    down = Toolbox(ToolSettings(prometheus_url="http://127.0.0.1:9", step_timeout_s=2))
    unreachable = await down.call(query("up"))
    assert unreachable.status == "error" and "unreachable" in unreachable.summary


@pytest.mark.parametrize(("service", "branch", "end"), [("checkout", "yes", "Roll back"), ("search", "no", "Watch")])
async def test_a_query_step_decides_the_branch_from_real_values(
    tmp_path: Path, toolbox: Toolbox, service: str, branch: str, end: str
) -> None:
    cite = (Citation(doc_id="rb.md", chunk_id="rb.md#0"),)
    workflow = Workflow(
        title="Checkout errors",
        steps=(
            Step(
                id="s1",
                type="decision",
                text="Is the error ratio above 5%?",
                branches=Branches(yes="s2", no="s3"),
                citations=cite,
                action=query(f'opsflow_error_ratio{{service="{service}"}}'),
            ),
            Step(id="s2", type="terminal", text="Roll back the release", citations=cite),
            Step(id="s3", type="terminal", text="Watch it for ten minutes", citations=cite),
        ),
    )
    records = RecordStore(f"sqlite:///{tmp_path}/records.sqlite")
    executor = Executor(records, toolbox, ToolSettings(), None)
    report = await executor.run(workflow, query="checkout errors", user="U1")
    await records.aclose()
    decided = next(e for e in report.events if e.kind == "decision")
    assert decided.branch == branch and decided.reason.startswith("rule: ")
    assert report.state == "finished"
    assert next(e.text for e in report.events if e.kind == "manual").startswith(end)


def test_opsflow_checks_runs_the_sample_runbooks_query_and_takes_the_branch(
    prom: Server, sample_kb: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(Path(__file__).parent)
    monkeypatch.setenv("OPSFLOW_DATA_DIR", str(sample_kb.data_dir))
    monkeypatch.setenv("OPSFLOW_TOOLS__PROMETHEUS_URL", prom.url)
    # Decisions without a rule ask the model: a model server that is down leaves them undecided.
    monkeypatch.setenv("OPSFLOW_LLM__BACKEND", "ollama")
    monkeypatch.setenv("OPSFLOW_OLLAMA__MODEL", "llama3.1:8b")
    monkeypatch.setenv("OPSFLOW_OLLAMA__HOST", "http://127.0.0.1:9")
    result = CliRunner().invoke(main, ["checks", "--json", "The ingress returns a lot of 5xx errors"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["workflow"]["title"] == "IngressHTTP5xxRateHigh"
    run = body["run"]
    probe, decision = run["events"][1], run["events"][2]
    assert probe["kind"] == "probe" and probe["action"]["tool"] == "prometheus_query"
    assert probe["result"]["status"] == "ok"
    assert probe["result"]["data"]["values"][0] == pytest.approx(0.07, abs=0.01)
    assert decision["kind"] == "decision" and decision["branch"] == "yes" and decision["reason"].startswith("rule: ")
    assert run["state"] in ("finished", "stopped", "waiting_approval")
    text = CliRunner().invoke(main, ["checks", "The ingress returns a lot of 5xx errors"])
    assert text.exit_code == 0, text.output
    assert "prometheus_query" in text.output and "→ yes (rule:" in text.output and "state:" in text.output


@pytest.fixture(scope="module")
def target_down_kb(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Settings:
    """The benchmark corpus's two TargetDown runbooks (prometheus-operator's, OpenShift's), ingested."""
    settings = make_settings(tmp_path_factory.mktemp("target-down-kb"), model_cache)
    corpus = BENCH / "corpus"
    runbooks = [
        corpus / "prometheus-operator/general/TargetDown.md",
        corpus / "openshift/cluster-monitoring-operator/TargetDown.md",
    ]
    if not all(r.is_file() for r in runbooks):
        pytest.skip(f"the benchmark corpus is not at {corpus}")

    async def build() -> None:
        async with open_knowledge(settings) as kb:
            report = await ingest(runbooks, kb.builder, max_bytes=settings.ingest.max_document_bytes)
            assert not report.failed, report.failed

    asyncio.run(build())
    return settings


def test_opsflow_checks_runs_the_runbooks_up_query_on_a_target_that_is_down(
    prom: Server, target_down_kb: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(Path(__file__).parent)
    monkeypatch.setenv("OPSFLOW_DATA_DIR", str(target_down_kb.data_dir))
    monkeypatch.setenv("OPSFLOW_TOOLS__PROMETHEUS_URL", prom.url)
    # No model server: a decision without a rule stays undecided.
    monkeypatch.setenv("OPSFLOW_LLM__BACKEND", "ollama")
    monkeypatch.setenv("OPSFLOW_OLLAMA__MODEL", "llama3.1:8b")
    monkeypatch.setenv("OPSFLOW_OLLAMA__HOST", "http://127.0.0.1:9")
    question = "Prometheus reports a scrape target down, what do I check?"
    result = CliRunner().invoke(main, ["checks", "--json", question])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["workflow"]["title"] == "TargetDown"
    probes = [e for e in body["run"]["events"] if e["kind"] == "probe"]
    # The runbook's query, as written (or, on a decision, without its rule), on the real Prometheus.
    up = next(e for e in probes if e["action"]["tool"] == "prometheus_query")
    assert up["action"]["args"]["query"] in ("up == 0", "up") and up["action"]["mode"] == "read"
    assert up["result"]["status"] == "ok" and 0.0 in up["result"]["data"]["values"]
    assert f'instance="{DOWN}"' in up["result"]["summary"]
    text = CliRunner().invoke(main, ["checks", question])
    assert text.exit_code == 0, text.output
    assert "prometheus_query" in text.output and f'instance="{DOWN}"' in text.output
