"""Secrets out of text: every tool output passes through ``redact`` before it is stored, shown or
given to a model.

Pattern-based, so it errs on the side of hiding: a value next to a word like ``password`` or
``token`` is hidden whatever it looks like, and well-known token shapes are hidden wherever they are.
It cannot know an unlabelled random string is a secret; tools must not print credentials they hold.
"""

from __future__ import annotations

import re

HIDDEN = "[REDACTED]"

_SECRET_WORD = (
    r"[\w.-]*(?:passw(?:or)?d|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credentials?)[\w.-]*"
)

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # A whole PEM private key block, or its start when the output was cut before the end.
    (
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?:.*?-----END [A-Z ]*PRIVATE KEY-----|.*)", re.DOTALL),
        "[REDACTED PRIVATE KEY]",
    ),
    # Authorization / Proxy-Authorization headers, whatever the scheme.
    (re.compile(r"(?im)^(\s*(?:proxy-)?authorization\s*[:=]\s*).+$"), rf"\1{HIDDEN}"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]{8,}=*"), rf"\1 {HIDDEN}"),
    # user:password@ in URLs (postgres://app:s3cret@db/…, https://u:p@host).
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*):[^/\s@]+@"), rf"\1:{HIDDEN}@"),
    # Secrets in query strings (?token=…&sig=…).
    (re.compile(r"(?i)([?&](?:" + _SECRET_WORD + r"|sig|signature|key)=)[^&\s\"']+"), rf"\1{HIDDEN}"),
    # key = value, key: value, "key": "value", export KEY=value.
    (
        re.compile(r"(?i)(\b" + _SECRET_WORD + r"[\"']?\s*[:=]\s*)(?!\[REDACTED)(?:\"[^\"]*\"|'[^']*'|[^\s,;\"'}]+)"),
        rf"\1{HIDDEN}",
    ),
    # Token shapes that are secrets on their own.
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), HIDDEN),  # Slack bot/user/app tokens
    (re.compile(r"\bxapp-[A-Za-z0-9-]{10,}"), HIDDEN),  # Slack app-level tokens
    (re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b"), HIDDEN),  # AWS access key ids
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"), HIDDEN),  # GitHub tokens
    (re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}"), HIDDEN),  # GitLab tokens
    (re.compile(r"\bAIza[0-9A-Za-z_-]{35}"), HIDDEN),  # Google API keys
    (re.compile(r"\bsk-[A-Za-z0-9_-]{20,}"), HIDDEN),  # OpenAI-style keys
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), HIDDEN),  # JWTs
)


def redact(text: str) -> str:
    """``text`` with every secret it visibly holds replaced by ``[REDACTED]``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


SUMMARY_CHARS = 1500


def condensed(text: str, limit: int = SUMMARY_CHARS) -> str:
    """``text`` redacted, then cut to about ``limit`` characters keeping its head and its tail
    (errors tend to be at the end of an output, the columns at its start)."""
    text = redact(text).strip()
    if len(text) <= limit:
        return text
    head, tail = text[: limit * 2 // 3], text[-(limit // 3) :]
    omitted = len(text) - len(head) - len(tail)
    return f"{head.rstrip()}\n… ({omitted} characters omitted) …\n{tail.lstrip()}"
