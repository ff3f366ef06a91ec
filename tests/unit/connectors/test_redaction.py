"""Secrets never survive ``redact``; ordinary operational text does."""

from __future__ import annotations

import pytest

from connectors.redaction import HIDDEN, condensed, redact

PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx1y\nabcdef==\n-----END RSA PRIVATE KEY-----"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N", "eyJhbGci"),
        ("curl -H 'Authorization: Basic dXNlcjpodW50ZXIy' http://x", "dXNlcjpodW50ZXIy"),
        ("authorization=token abcdef0123456789", "abcdef0123456789"),
        ("sent header bearer abc123def456ghi789", "abc123def456ghi789"),
        ("PGPASSWORD=hunter2 psql -h db", "hunter2"),
        ('{"password": "s3cr3t!", "user": "app"}', "s3cr3t!"),
        ("db_password: 'p@ss word'", "p@ss word"),
        ("export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI"),
        ("aws key AKIAIOSFODNN7EXAMPLE in use", "AKIAIOSFODNN7EXAMPLE"),
        ("token xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "xoxb-1234"),
        ("app token xapp-1-A0123456789-1234567890-abcdef", "xapp-1-A012"),
        ("url postgres://orders:Sup3rS3cret@pg-primary:5432/orders", "Sup3rS3cret"),
        ("GET https://hooks.example/notify?token=abc123&channel=ops", "abc123"),
        ("api_key = 0123456789abcdef", "0123456789abcdef"),
        ("github ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789 pushed", "ghp_aBcD"),
        (f"key:\n{PEM}\nend", "MIIEowIBAAKCAQEAx1y"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA (cut by the output cap", "b3BlbnNzaC1"),
    ],
)
def test_secrets_are_redacted(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out
    assert "[REDACTED" in out


@pytest.mark.parametrize(
    "text",
    [
        "NAME          READY   STATUS             RESTARTS   AGE\norders-7d9f   0/1     CrashLoopBackOff   12   1h",
        'sum(rate(nginx_ingress_controller_requests{status=~"5.."}[5m])) 0.071',
        "GET http://checkout.internal/healthz → 503 Service Unavailable in 12 ms",
        "max_connections = 100",
    ],
)
def test_ordinary_output_is_untouched(text: str) -> None:
    assert redact(text) == text


def test_redaction_keeps_the_key_name_so_the_reader_knows_what_was_hidden() -> None:
    assert redact("password=hunter2 user=app") == f"password={HIDDEN} user=app"
    assert redact("postgres://app:pw@db/x") == f"postgres://app:{HIDDEN}@db/x"


def test_condensed_keeps_head_and_tail_within_the_limit_and_redacts_first() -> None:
    text = "first line\n" + "x" * 5000 + "\ntoken=abcdef123456 last line"
    out = condensed(text, limit=300)
    assert out.startswith("first line") and out.endswith("last line")
    assert "characters omitted" in out and len(out) < 400
    assert "abcdef123456" not in out
    assert condensed("short") == "short"
