"""The served planner and scorer follow the model registry, without a restart.

Each target's chat model is the base model, or the base with its promoted version's adapter (built
by the composition root: llama.cpp's GGUF LoRA, or an Ollama model tag created with it). The
registry is checked every ``reload_s`` seconds in the background, and at once by ``refresh()`` (after
a promotion or a rollback in this process); a change swaps the model between two calls. Answers
name the version: ``llama.cpp:gemma-3-270m-q4_k_m.gguf+planner-v3``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import ollama

from core.errors import BackendUnavailable, ModelUnavailable
from core.settings import OllamaSettings
from generation.ollama import map_ollama_errors
from generation.ports import ChatModel, GrammarChatModel, Message
from trainer.jobs import Target
from trainer.registry import ModelRegistry, version_name
from trainer.store import ModelVersion, RecordStore

log = logging.getLogger(__name__)

BuildAdapted = Callable[[ModelVersion], Awaitable[ChatModel]]
"""The base chat model with a version's adapter (named by the composition root)."""


@dataclass(frozen=True)
class _Served:
    version: ModelVersion | None
    model: ChatModel


class PromotedChatModel:
    """A ``ChatModel`` that is whichever version of ``target`` is promoted (the shared base when none is)."""

    def __init__(self, target: Target, registry: ModelRegistry, base: ChatModel, build: BuildAdapted) -> None:
        self.target = target
        self._registry = registry
        self._base = base
        self._build = build
        self._served = _Served(None, base)
        self._swap = asyncio.Lock()
        self.name = base.name  # set with each swap: answers record it

    @property
    def version(self) -> ModelVersion | None:
        return self._served.version

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        schema: Mapping[str, Any] | None = None,
        max_tokens: int = 512,
        grammar: str | None = None,
    ) -> str:
        """As the served model's; a ``grammar`` is passed on only when given (``GrammarChatModel``)."""
        if grammar is None:
            return await self._served.model.complete(messages, schema=schema, max_tokens=max_tokens)
        model = cast(GrammarChatModel, self._served.model)
        return await model.complete(messages, schema=schema, max_tokens=max_tokens, grammar=grammar)

    async def ping(self) -> None:
        await self._served.model.ping()

    async def refresh(self) -> bool:
        """Serve the version promoted now; True when that changed the model. A registry that cannot be
        read, or an adapter that cannot be used, leaves the current model serving (and is logged)."""
        async with self._swap:
            try:
                promoted = await self._registry.promoted(self.target)
            except BackendUnavailable as exc:
                log.warning("cannot check the promoted %s: %s", self.target, exc)
                return False
            current = self._served.version
            if (promoted and promoted.id) == (current and current.id):
                return False
            try:
                model = self._base if promoted is None else await self._build(promoted)
            except ModelUnavailable as exc:
                log.error("cannot serve %s: %s", version_name(promoted) if promoted else "the base model", exc)
                return False
            previous, self._served = self._served, _Served(promoted, model)
            self.name = self._base.name if promoted is None else f"{self._base.name}+{version_name(promoted)}"
            log.info("the %s is now %s", self.target, self.name)
            if previous.model is not self._base:
                await previous.model.aclose()
            return True

    async def aclose(self) -> None:
        served, self._served, self.name = self._served, _Served(None, self._base), self._base.name
        if served.model is not self._base:
            await served.model.aclose()


class ServedModels:
    """The planner's and the scorer's promoted models, kept current by one background check."""

    def __init__(self, models: Sequence[PromotedChatModel], *, reload_s: float) -> None:
        self.models = {m.target: m for m in models}
        self._reload_s = reload_s
        self._stopping = asyncio.Event()
        self._watching: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Serve what is promoted now, then keep checking in the background."""
        await self.refresh()
        self._watching = asyncio.create_task(self._watch(), name="served-models")

    async def refresh(self) -> list[str]:
        """Check the registry now; the names of the models that changed."""
        return [m.name for m in self.models.values() if await m.refresh()]

    async def aclose(self) -> None:
        self._stopping.set()
        if self._watching is not None:
            await self._watching
        for model in self.models.values():
            await model.aclose()

    async def _watch(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._reload_s)
            if not self._stopping.is_set():
                await self.refresh()


async def open_served_models(
    records: RecordStore, base: ChatModel, build: BuildAdapted, *, reload_s: float
) -> ServedModels:
    """The planner's and the Scorer's models, serving what is promoted now and following the registry."""
    registry = ModelRegistry(records)
    served = ServedModels(
        [PromotedChatModel("planner", registry, base, build), PromotedChatModel("scorer", registry, base, build)],
        reload_s=reload_s,
    )
    await served.start()
    return served


async def create_ollama_model(cfg: OllamaSettings, version: ModelVersion, adapter: Path) -> str:
    """An Ollama model tag for ``version``: the configured model with the GGUF LoRA ``adapter`` on top
    (uploaded as a blob, then ``create``; both are idempotent)."""
    tag = f"opsflow-{version_name(version)}"
    client = ollama.AsyncClient(host=cfg.host, timeout=httpx.Timeout(cfg.timeout_s, connect=5.0))
    try:
        with map_ollama_errors(cfg.host, tag):
            digest = await client.create_blob(adapter)
            await client.create(model=tag, from_=cfg.model, adapters={adapter.name: digest})
    finally:
        await client.close()  # type: ignore[no-untyped-call]
    return tag
