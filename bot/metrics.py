"""The bot's Prometheus metrics, served at ``GET /metrics`` in the text exposition format.

One registry per server (not the process-global one), so several servers in a test process do not share
counts.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """Counters and histograms the bot updates as it works."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("opsflow_http_requests", "HTTP requests served", ["path", "status"], registry=r)
        self.request_seconds = Histogram(
            "opsflow_http_request_seconds",
            "Time to answer an HTTP request",
            ["path"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.answers = Counter("opsflow_answers", "Questions answered", ["origin", "outcome"], registry=r)
        self.answer_seconds = Histogram(
            "opsflow_answer_seconds", "Question to final answer", ["origin"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.feedback = Counter("opsflow_feedback", "Feedback recorded", ["kind"], registry=r)
        self.alerts = Counter("opsflow_alerts", "Alerts received and stored", ["source", "status"], registry=r)
        self.alerts_refused = Counter(
            "opsflow_alerts_refused", "Alert webhooks refused", ["source", "reason"], registry=r
        )
        self.alert_queue = Gauge("opsflow_alert_queue_depth", "Alert groups waiting to be posted", registry=r)
        self.slack_events = Counter("opsflow_slack_events", "Slack requests handled", ["kind"], registry=r)
        self.slack_duplicates = Counter("opsflow_slack_duplicates", "Slack retries not answered twice", registry=r)
        self.slack_errors = Counter(
            "opsflow_slack_api_errors", "Failed Slack Web API calls", ["method", "error"], registry=r
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
