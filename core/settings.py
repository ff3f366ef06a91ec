"""Settings: one ``Settings`` object built once by the composition root, passed on by section.

Read from ``OPSFLOW_``-prefixed environment variables (``__`` nests: ``OPSFLOW_SLACK__BOT_TOKEN``)
and a ``.env`` file. This is the only module that reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RecordSettings(_Section):
    url: str | None = Field(
        None,
        description="SQLAlchemy URL of the record store, e.g. postgresql+psycopg://opsflow@db/opsflow; "
        "default: SQLite in the data directory.",
    )


class IngestSettings(_Section):
    max_document_bytes: int = Field(5_000_000, gt=0, description="Larger files are skipped as oversized.")
    extractor: Literal["structural", "llm"] = Field(
        "structural",
        description="How incident nodes are found: from runbook sections (no LLM) or by the configured LLM.",
    )
    chunk_words: int = Field(160, ge=20, description="Window length for long sections, in words.")
    chunk_overlap: int = Field(40, ge=0, description="Words shared by consecutive windows.")

    @model_validator(mode="after")
    def _overlap_below_window(self) -> IngestSettings:
        if self.chunk_overlap >= self.chunk_words:
            raise ValueError("ingest.chunk_overlap must be smaller than ingest.chunk_words")
        return self


class RetrievalSettings(_Section):
    backend: Literal["embedded", "elasticsearch"] = "embedded"
    es_url: AnyHttpUrl | None = None
    es_api_key: SecretStr | None = None
    es_index: str = "opsflow-chunks"
    timeout_s: float = Field(5.0, gt=0, description="Deadline for one search request.")
    top_k: int = Field(8, gt=0, description="Passages handed to the planner.")
    candidates: int = Field(50, gt=0, description="Hits taken from each ranking before fusion.")
    # Fusion defaults from bench/retrieval_quality.py on the dev split: BM25 alone is the stronger
    # ranking on runbooks (hit@1 0.887 vs 0.784 dense), and a small k rewards agreement at the top.
    rrf_k: int = Field(10, gt=0, description="Reciprocal-rank-fusion constant.")
    bm25_weight: float = Field(2.0, ge=0)
    dense_weight: float = Field(1.0, ge=0)
    named_weight: float = Field(1.0, ge=0, description="Weight of chunks of incidents the query names.")
    embedding_dim: int = Field(384, gt=0, description="Vector size of the embedding model (384 for MiniLM).")
    embedding_backend: Literal["onnx", "ollama"] = Field(
        "onnx", description="Embed in process (onnxruntime) or through Ollama's /api/embed."
    )
    embedding_model: str | None = Field(
        None,
        description="onnx: directory of a sentence-transformers model (default: the packaged all-MiniLM-L6-v2); "
        "ollama: the embedding model's tag (required).",
    )

    @model_validator(mode="after")
    def _ollama_embeddings_need_a_model(self) -> RetrievalSettings:
        if self.embedding_backend == "ollama" and not self.embedding_model:
            raise ValueError("retrieval.embedding_backend=ollama needs OPSFLOW_RETRIEVAL__EMBEDDING_MODEL")
        return self

    @model_validator(mode="after")
    def _es_needs_url(self) -> RetrievalSettings:
        if self.backend == "elasticsearch" and self.es_url is None:
            raise ValueError("retrieval.backend=elasticsearch needs OPSFLOW_RETRIEVAL__ES_URL")
        return self


class GraphSettings(_Section):
    backend: Literal["embedded", "neo4j"] = "embedded"
    neo4j_uri: str | None = None
    neo4j_user: str = "neo4j"
    neo4j_password: SecretStr = SecretStr("")
    neo4j_database: str | None = Field(None, description="Database name; default: the server's default.")
    timeout_s: float = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _neo4j_needs_uri(self) -> GraphSettings:
        if self.backend == "neo4j" and not self.neo4j_uri:
            raise ValueError("graph.backend=neo4j needs OPSFLOW_GRAPH__NEO4J_URI")
        return self


class PlannerSettings(_Section):
    kind: Literal["extractive", "llm"] = Field("extractive", description="Which planner writes workflows.")
    samples: int = Field(1, ge=1, le=3, description="Workflows planned per question; the Scorer picks the best.")
    min_score: float | None = Field(None, ge=0, le=1, description="Abstain when the Scorer rates the best lower.")
    # Calibrated on the dev split (opsflow eval): 0.47 keeps false abstentions at 3% with 89% of the
    # questions outside the runbooks declined; 0.50 declines all of those but 5% of answerable ones.
    abstain_below: float = Field(0.47, ge=0, le=1, description="Abstain when the leading runbook matches more weakly.")
    max_steps: int = Field(8, ge=2, le=30)


class OllamaSettings(_Section):
    host: str = "http://127.0.0.1:11434"
    model: str = Field("", description="Model tag, e.g. llama3.1:8b; empty = Ollama not used.")
    timeout_s: float = Field(120.0, gt=0, description="Deadline for one generation.")
    keep_alive: str = Field("10m", description="How long Ollama keeps the model loaded after a call.")


class LlmSettings(_Section):
    backend: Literal["llamacpp", "ollama"] = Field(
        "llamacpp", description="Where the chat model runs (llm planner, Scorer, llm extractor)."
    )


class LlamaCppSettings(_Section):
    model_path: str | None = Field(
        None, description="GGUF file; default: the packaged gemma3-270m, assembled into <data_dir>/models/."
    )
    n_ctx: int = Field(4096, ge=256, description="Context window in tokens (prompt plus reply).")
    n_threads: int | None = Field(None, ge=1, description="CPU threads; default: half the cores this process may use.")
    max_tokens: int = Field(1024, gt=0, description="Cap on generated tokens; a caller's larger max_tokens is cut.")
    chat_format: str = Field(
        "gemma", description="llama-cpp-python chat format; the packaged GGUF carries no chat template."
    )
    lora_path: str | None = Field(None, description="GGUF LoRA adapter applied on top of the model.")

    @model_validator(mode="after")
    def _reply_fits_context(self) -> LlamaCppSettings:
        if self.max_tokens >= self.n_ctx:
            raise ValueError("llamacpp.max_tokens must be smaller than llamacpp.n_ctx")
        return self


class SlackSettings(_Section):
    bot_token: SecretStr | None = None
    signing_secret: SecretStr | None = None
    app_token: SecretStr | None = Field(None, description="xapp- token; set it to use Socket Mode instead of HTTP.")
    api_url: str = "https://slack.com/api/"
    admins: Annotated[tuple[str, ...], NoDecode] = Field((), description="Comma-separated user or group ids.")
    channels: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Comma-separated channel ids where the bot may answer mentions; empty = any it is in."
    )
    upvote_emoji: Annotated[tuple[str, ...], NoDecode] = Field(("+1", "thumbsup"), description="Reactions that vote up.")
    downvote_emoji: Annotated[tuple[str, ...], NoDecode] = Field(
        ("-1", "thumbsdown"), description="Reactions that vote down."
    )
    attach_picture: bool = Field(False, description="Upload the workflow's flowchart (PNG) into the thread.")
    doc_base_url: str | None = Field(None, description="Sources link to <doc_base_url>/<doc_id> when set.")
    answer_timeout_s: float = Field(120.0, gt=0, description="An answer taking longer is replaced by an apology.")

    @field_validator("admins", "channels", "upvote_emoji", "downvote_emoji", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(a.strip().strip(":") for a in value.split(",") if a.strip())
        return value

    @field_validator("api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        # slack_sdk joins method names with urljoin, which drops a last segment without '/'.
        return value if value.endswith("/") else value + "/"


class HttpSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(3000, ge=0, le=65535)


class AlertRoute(_Section):
    """Alerts whose labels include every pair of ``match`` go to ``channel``."""

    match: dict[str, str]
    channel: str


class AlertSettings(_Section):
    token: SecretStr | None = Field(None, description="Bearer token for Alertmanager, Grafana and generic webhooks.")
    pagerduty_secret: SecretStr | None = Field(None, description="Signing secret of the PagerDuty v3 webhook.")
    default_channel: str | None = None
    routes: tuple[AlertRoute, ...] = Field(
        (), description='JSON list, first match wins: [{"match": {"team": "db"}, "channel": "C123"}].'
    )
    queue_size: int = Field(1000, gt=0, description="Alerts waiting to be posted; beyond it webhooks get 503.")
    workers: int = Field(4, gt=0, description="Alert groups posted concurrently.")
    answer: bool = Field(True, description="Answer a new alert thread with a workflow.")
    flap_window_s: float = Field(
        300.0, ge=0, description="A group that fires again this soon after resolving is edited, not re-announced."
    )


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "opsflow"


class Settings(BaseSettings):
    """All of opsflow's configuration."""

    model_config = SettingsConfigDict(
        env_prefix="OPSFLOW_", env_nested_delimiter="__", env_file=".env", frozen=True, extra="ignore"
    )

    data_dir: Path = Field(default_factory=_default_data_dir)
    records: RecordSettings = RecordSettings()
    ingest: IngestSettings = IngestSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    graph: GraphSettings = GraphSettings()
    planner: PlannerSettings = PlannerSettings()
    llm: LlmSettings = LlmSettings()
    ollama: OllamaSettings = OllamaSettings()
    llamacpp: LlamaCppSettings = LlamaCppSettings()
    slack: SlackSettings = SlackSettings()
    http: HttpSettings = HttpSettings()
    alerts: AlertSettings = AlertSettings()

    @model_validator(mode="after")
    def _ollama_needs_a_model(self) -> Settings:
        if self.llm.backend == "ollama" and not self.ollama.model:
            raise ValueError("llm.backend=ollama needs a model: set OPSFLOW_OLLAMA__MODEL")
        return self

    @property
    def records_url(self) -> str:
        return self.records.url or f"sqlite:///{self.data_dir / 'records.sqlite'}"
