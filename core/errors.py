"""The error tree. Every error opsflow raises on purpose is one of these.

    OpsflowError
    ├── ConfigError            settings are missing or contradict each other
    ├── BackendUnavailable     a configured backend cannot be reached (.backend names it)
    │   ├── RetrievalUnavailable
    │   └── ModelUnavailable
    ├── DocumentError          one document cannot be ingested (.reason says why)
    ├── PlanError              a model's output failed validation (.raw keeps the text)
    ├── TrainingError          a training job failed
    └── AlertError             a webhook payload is not a valid alert of its source

Tools fail as values (``ToolResult``), not as exceptions: the world being down is not a bug.
"""

from __future__ import annotations


class OpsflowError(Exception):
    """Root of every error opsflow raises on purpose."""


class ConfigError(OpsflowError):
    """Settings are missing, malformed or contradict each other."""


class BackendUnavailable(OpsflowError):
    """A configured backend (store, index, model server) cannot be reached."""

    def __init__(self, message: str, *, backend: str) -> None:
        super().__init__(message)
        self.backend = backend


class RetrievalUnavailable(BackendUnavailable):
    """The chunk index or the incident graph cannot be reached."""


class ModelUnavailable(BackendUnavailable):
    """The chat or embedding model cannot be reached or loaded."""


class DocumentError(OpsflowError):
    """One document cannot be ingested; ``reason`` is the short text shown in the summary."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PlanError(OpsflowError):
    """A model's output failed workflow validation; ``raw`` is the output as received."""

    def __init__(self, message: str, *, raw: str = "") -> None:
        super().__init__(message)
        self.raw = raw


class TrainingError(OpsflowError):
    """A training job failed or produced no usable model."""


class AlertError(OpsflowError):
    """A webhook payload that is not a valid alert of its source; the sender gets a 4xx saying why."""
