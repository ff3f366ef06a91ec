"""The composition root: settings → concrete adapters → services. The only module naming adapters."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from slack_sdk.web.async_client import AsyncWebClient

from bot.alerting import AlertDispatcher
from bot.corrections import Corrections
from bot.executor import Executor
from bot.feedback import FeedbackListeners
from bot.ingest import ingest
from bot.metrics import Metrics
from bot.records import BotRecords
from bot.service import Service
from bot.serving import ServedModels, create_ollama_model, open_served_models
from bot.slack import AdminCommand, SlackBot
from bot.slack_api import SlackApi, web_client
from bot.slack_checks import SlackChecks
from bot.threads import ThreadService
from connectors.tools import Toolbox, catalogue
from core.errors import ConfigError, ModelUnavailable
from core.settings import GraphSettings, RetrievalSettings, Settings
from generation.extraction import LlmIncidentExtractor
from generation.ollama import OllamaChatModel
from generation.planner import LlmPlanner, reply_format_for
from generation.ports import ChatModel
from generation.scorer import Scorer
from retrieval.embedded import EmbeddedChunkIndex, EmbeddedGraphStore
from retrieval.embedding import OnnxEmbedder
from retrieval.incidents import StructuralExtractor
from retrieval.knowledge import KnowledgeBuilder
from retrieval.ollama_embedding import OllamaEmbedder
from retrieval.ports import ChunkIndex, Embedder, GraphStore, IncidentExtractor
from retrieval.retriever import Retriever
from trainer.store import ModelVersion


def build_chunk_index(cfg: RetrievalSettings, data_dir: Path, dim: int) -> ChunkIndex:
    match cfg.backend:
        case "embedded":
            return EmbeddedChunkIndex(data_dir / "index.sqlite")
        case "elasticsearch":
            from retrieval.elasticsearch import ElasticsearchChunkIndex

            return ElasticsearchChunkIndex(cfg, dim=dim)


def build_graph_store(cfg: GraphSettings, data_dir: Path) -> GraphStore:
    match cfg.backend:
        case "embedded":
            return EmbeddedGraphStore(data_dir / "graph.sqlite")
        case "neo4j":
            from retrieval.neo4j import Neo4jGraphStore

            return Neo4jGraphStore(cfg)


def build_embedder(settings: Settings) -> Embedder:
    cfg = settings.retrieval
    match cfg.embedding_backend:
        case "onnx":
            model_dir = Path(cfg.embedding_model) if cfg.embedding_model else None
            return OnnxEmbedder(settings.data_dir / "models", model_dir)
        case "ollama":
            return OllamaEmbedder(settings.ollama, cfg.embedding_model or "", dim=cfg.embedding_dim)


def build_chat_model(settings: Settings) -> ChatModel:
    """The chat model of the llm planner, the Scorer and the llm extractor; it loads on first use."""
    match settings.llm.backend:
        case "ollama":
            return OllamaChatModel(settings.ollama)
        case "llamacpp":
            from generation.llamacpp import LlamaCppChatModel

            return LlamaCppChatModel(settings.llamacpp, settings.data_dir)
        case "openai":
            from generation.openai_compat import OpenAIChatModel

            return OpenAIChatModel(settings.openai)


async def build_adapted_chat_model(settings: Settings, version: ModelVersion) -> ChatModel:
    """The chat model with a trained version's adapter on top (its GGUF LoRA for llama.cpp)."""
    adapter = Path(version.adapter or "")
    if not await asyncio.to_thread(adapter.is_file):
        raise ModelUnavailable(f"version {version.id} has no adapter file {adapter}", backend=settings.llm.backend)
    match settings.llm.backend:
        case "llamacpp":
            from generation.llamacpp import LlamaCppChatModel

            cfg = settings.llamacpp.model_copy(update={"lora_path": str(adapter)})
            return LlamaCppChatModel(cfg, settings.data_dir)
        case "ollama":
            tag = await create_ollama_model(settings.ollama, version, adapter)
            return OllamaChatModel(settings.ollama.model_copy(update={"model": tag}))
        case "openai":
            raise ModelUnavailable(
                f"version {version.id}: an OpenAI-compatible server loads adapters itself (vLLM: --lora-modules); "
                "serve it there and set OPSFLOW_OPENAI__MODEL to its name",
                backend="openai",
            )


@dataclass(frozen=True)
class Knowledge:
    """The opened knowledge side: stores, builder and retriever."""

    index: ChunkIndex
    graph: GraphStore
    builder: KnowledgeBuilder
    retriever: Retriever
    records: BotRecords
    service: Service
    embedder: Embedder
    chat: ChatModel
    served: ServedModels


@asynccontextmanager
async def open_knowledge(settings: Settings) -> AsyncIterator[Knowledge]:
    """Open every store for the knowledge base; close them in reverse order on exit."""
    async with AsyncExitStack() as stack:
        embedder = build_embedder(settings)
        stack.push_async_callback(embedder.aclose)
        index = build_chunk_index(settings.retrieval, settings.data_dir, settings.retrieval.embedding_dim)
        stack.push_async_callback(index.aclose)
        graph = build_graph_store(settings.graph, settings.data_dir)
        stack.push_async_callback(graph.aclose)
        records = BotRecords(settings.records_url)
        stack.push_async_callback(records.aclose)
        chat = build_chat_model(settings)
        stack.push_async_callback(chat.aclose)
        extractor: IncidentExtractor = StructuralExtractor()
        if settings.ingest.extractor == "llm":
            extractor = LlmIncidentExtractor(chat)
        builder = KnowledgeBuilder(
            index,
            graph,
            embedder,
            extractor,
            window_words=settings.ingest.chunk_words,
            overlap_words=settings.ingest.chunk_overlap,
        )
        retriever = Retriever(index, graph, embedder, settings.retrieval)
        wants_scorer = settings.planner.samples > 1 or settings.planner.min_score is not None
        adapted = functools.partial(build_adapted_chat_model, settings)
        served = await open_served_models(records, chat, adapted, reload_s=settings.train.reload_s)
        stack.push_async_callback(served.aclose)
        planner = LlmPlanner(
            served.models["planner"],
            tools=tuple(catalogue(settings.tools).values()),
            reply_format=reply_format_for(settings.llm.backend),
        )
        scorer = Scorer(served.models["scorer"]) if wants_scorer else None
        service = Service(retriever, settings.planner, planner, scorer, Corrections(records, index))
        yield Knowledge(index, graph, builder, retriever, records, service, embedder, chat, served)


def build_executor(settings: Settings, kb: Knowledge) -> Executor:
    """The executor of workflow checks with the configured tools; decisions by the configured chat model."""
    return Executor(kb.records, Toolbox(settings.tools), settings.tools, kb.chat)


@dataclass
class Bot:
    """The serving side: the knowledge, the Slack app, the thread service, the alert dispatcher and metrics."""

    settings: Settings
    kb: Knowledge
    slack: SlackBot
    threads: ThreadService
    alerts: AlertDispatcher
    metrics: Metrics


def build_bot(
    settings: Settings,
    kb: Knowledge,
    *,
    client: AsyncWebClient | None = None,
    admin_commands: Mapping[str, AdminCommand] | None = None,
) -> Bot:
    """Assemble the bot around an opened knowledge base; ``client`` replaces the Slack Web API client,
    ``admin_commands`` (the learning loop's train, models and schedule) join ``/opsflow ingest``."""
    cfg = settings.slack
    if cfg.bot_token is None and client is None:
        raise ConfigError("Slack is not configured: set OPSFLOW_SLACK__BOT_TOKEN")
    if cfg.signing_secret is None and cfg.app_token is None:
        raise ConfigError("set OPSFLOW_SLACK__SIGNING_SECRET (HTTP mode) or OPSFLOW_SLACK__APP_TOKEN (Socket Mode)")
    metrics = Metrics()
    base = cfg.doc_base_url.rstrip("/") if cfg.doc_base_url else None

    async def ingest_command(args: str, user: str) -> str:
        paths = [Path(p) for p in args.split()]
        if not paths or not all(await asyncio.gather(*(asyncio.to_thread(p.exists) for p in paths))):
            return "Usage: `/opsflow ingest PATH…` with paths on the bot's machine."
        report = await ingest(paths, kb.builder, max_bytes=settings.ingest.max_document_bytes)
        await kb.records.audit(user, "ingest", {"paths": [str(p) for p in paths], **report.as_dict()})
        failed = "".join(f"\n• `{doc}`: {why}" for doc, why in report.failed[:10])
        return (
            f"Ingest done in {report.seconds:.0f} s: {len(report.added)} added, {len(report.changed)} changed, "
            f"{report.unchanged} unchanged, {len(report.removed)} removed, {len(report.failed)} skipped.{failed}"
        )

    async def status() -> str:
        counts = {**await kb.index.counts(), **await kb.graph.counts()}
        facts = ", ".join(f"{v} {k}" for k, v in counts.items())
        models = "; ".join(f"{target}: {model.name}" for target, model in kb.served.models.items())
        return f"opsflow knows {facts}. Planner: {settings.planner.kind}. Models — {models}."

    api = SlackApi(client or web_client(cfg), metrics)
    doc_url = (lambda doc_id: f"{base}/{doc_id}") if base else None
    tools = catalogue(settings.tools)
    threads = ThreadService(cfg, kb.service, kb.records, api, metrics, tools=tools, doc_url=doc_url)
    feedback = FeedbackListeners(cfg, kb.records, api, metrics, Corrections(kb.records, kb.index))
    commands = {"ingest": ingest_command, **(admin_commands or {})}
    slack = SlackBot(cfg, threads, feedback, kb.records, metrics, admin_commands=commands, status=status)
    checks = SlackChecks(slack.app, threads, build_executor(settings, kb), kb.records, settings.tools)
    checks.register()
    alerts = AlertDispatcher(
        settings.alerts, kb.records, threads, metrics, client=api.client, after_answer=checks.auto_run
    )
    return Bot(settings, kb, slack, threads, alerts, metrics)
