"""OpenAI-compatible chat adapter (the official ``openai`` client): vLLM, the llama.cpp servers, LM Studio,
LocalAI and hosted APIs, with replies held to a JSON schema by the server's structured output.

Only ``/v1/chat/completions`` and ``/v1/models`` are used. ``max_tokens`` (not the newer
``max_completion_tokens``) is sent because the local servers read only that field.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpcore2  # noqa: F401  (openai's HTTP transport: imported here, not on the event loop, see below)
import openai

from core.errors import ModelUnavailable, PlanError
from core.settings import OpenAISettings
from generation.llamacpp import fold_system_messages
from generation.ports import Message

# Sent when no key is set: the client refuses to start without one, and keyless servers ignore it.
_NO_KEY = "unused"
# Transport retries of the client (connection resets, 429, 5xx), each bounded by timeout_s.
_MAX_RETRIES = 1


def _too_long(exc: openai.BadRequestError) -> bool:
    # OpenAI and llama-cpp-python send code "context_length_exceeded"; vLLM only the sentence.
    return exc.code == "context_length_exceeded" or "maximum context length" in str(exc.message)


@contextlib.contextmanager
def map_openai_errors(cfg: OpenAISettings) -> Iterator[None]:
    """The client's failures as ``ModelUnavailable`` naming server and model; a prompt over the model's
    context as ``PlanError``."""
    where = f"OpenAI-compatible server at {cfg.base_url}"
    try:
        yield
    except openai.APIConnectionError as exc:  # includes APITimeoutError
        raise ModelUnavailable(f"{where} is unreachable for model {cfg.model!r}: {exc}", backend="openai") from exc
    except openai.BadRequestError as exc:
        if _too_long(exc):
            raise PlanError(f"openai:{cfg.model} cannot take this prompt: {exc.message}") from exc
        raise ModelUnavailable(_refused(where, cfg, exc), backend="openai") from exc
    except openai.APIStatusError as exc:
        raise ModelUnavailable(_refused(where, cfg, exc), backend="openai") from exc


def _refused(where: str, cfg: OpenAISettings, exc: openai.APIStatusError) -> str:
    hint = ""
    # llama-cpp-python's server answers json_schema with a 500 naming response_format; others with a 400 or 422.
    if cfg.response_format == "json_schema" and (exc.status_code in (400, 422) or "response_format" in exc.message):
        hint = " (if it does not take response_format json_schema, set OPSFLOW_OPENAI__RESPONSE_FORMAT=json_object)"
    return f"{where} refused model {cfg.model!r} ({exc.status_code}: {exc.message}){hint}"


def response_format(schema: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """The request's ``response_format`` for ``schema``: OpenAI's strict ``json_schema`` form, or the
    ``json_object``-with-``schema`` form of llama-cpp-python's server."""
    if kind == "json_object":
        return {"type": "json_object", "schema": dict(schema)}
    return {"type": "json_schema", "json_schema": {"name": "reply", "schema": dict(schema), "strict": True}}


def strict_json(raw: str) -> str:
    """``raw`` re-encoded as strict JSON when it parses only leniently: llama-cpp-python's schema grammar
    lets raw control characters (a newline) into strings. Anything else is returned unchanged."""
    try:
        json.loads(raw)
    except json.JSONDecodeError:
        try:
            return json.dumps(json.loads(raw, strict=False), ensure_ascii=False)
        except json.JSONDecodeError:
            return raw
    return raw


class OpenAIChatModel:
    """A model behind an OpenAI-compatible ``/v1`` API; the client is created on first use.

    Deterministic (temperature 0); ``max_tokens`` is capped at ``cfg.max_tokens`` when set.
    """

    def __init__(self, cfg: OpenAISettings) -> None:
        self._cfg = cfg
        self._client: openai.AsyncOpenAI | None = None
        self.name = f"openai:{cfg.model}"

    def _openai(self) -> openai.AsyncOpenAI:
        # The client's transport imports httpcore2 on first construction, which reads package metadata
        # (blocking file reads); it is imported with this module instead, never on the event loop.
        if self._client is None:
            # Key and URL passed explicitly: the client would read OPENAI_API_KEY and OPENAI_BASE_URL.
            self._client = openai.AsyncOpenAI(
                api_key=self._cfg.api_key.get_secret_value() or _NO_KEY,
                base_url=self._cfg.base_url,
                timeout=self._cfg.timeout_s,
                max_retries=_MAX_RETRIES,
            )
        return self._client

    async def complete(
        self, messages: Sequence[Message], *, schema: Mapping[str, Any] | None = None, max_tokens: int = 512
    ) -> str:
        turns = list(messages) if self._cfg.system_role else fold_system_messages(messages)
        extra = dict(self._cfg.extra_body)
        if schema is not None:
            # In the body as is: the client's typed parameter has no place for the json_object form's schema.
            extra["response_format"] = response_format(schema, self._cfg.response_format)
        with map_openai_errors(self._cfg):
            response = await self._openai().chat.completions.create(
                model=self._cfg.model,
                messages=turns,  # type: ignore[arg-type]  # Message is the client's role/content shape
                max_tokens=min(max_tokens, self._cfg.max_tokens or max_tokens),
                temperature=0,
                extra_body=extra or None,
            )
        content = (response.choices[0].message.content or "") if response.choices else ""
        return strict_json(content) if schema is not None else content

    async def ping(self) -> None:
        """The server answers and lists the model under ``/v1/models``; raises ``ModelUnavailable``."""
        with map_openai_errors(self._cfg):
            names = [m.id async for m in self._openai().models.list()]
        if self._cfg.model not in names:
            raise ModelUnavailable(
                f"OpenAI-compatible server at {self._cfg.base_url} does not serve {self._cfg.model!r} "
                f"(it lists {', '.join(names[:10]) or 'no models'})",
                backend="openai",
            )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
