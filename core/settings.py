"""Settings: one ``Settings`` object built once by the composition root, passed on by section.

Read from ``OPSFLOW_``-prefixed environment variables (``__`` nests: ``OPSFLOW_SLACK__BOT_TOKEN``)
and a ``.env`` file. This is the only module that reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

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
    # Runbook-ranking weights from a grid on both dev splits (alert-style and plain questions), see
    # retrieval.fusion.score_documents: the cosine above 0.4 carries most, BM25 (passages, names) ties it down.
    rrf_k: int = Field(10, gt=0, description="Reciprocal-rank-fusion constant (passage order within a runbook).")
    bm25_weight: float = Field(0.5, ge=0)
    dense_weight: float = Field(3.0, ge=0)
    named_weight: float = Field(0.25, ge=0, description="Weight of the incidents the query names.")
    runbook_weight: float = Field(0.5, ge=0, description="Weight of the ranking of runbooks by their names.")
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
    # Calibrated on both dev splits with runbooks ranked by retrieval.fusion.score_documents and the agreement
    # margin of bot.service.abstention (two rankings putting the lead first, the runbook-names one included):
    # 0.49 answers 39/40 plain and 97/97 alert-style answerable questions and declines 6/6 and 16/18 outside
    # the runbooks; 0.48 declines only 15/18, 0.50 wrongly declines 2/40 plain.
    abstain_below: float = Field(0.49, ge=0, le=1, description="Abstain when the leading runbook matches more weakly.")
    max_steps: int = Field(8, ge=2, le=30)


class OllamaSettings(_Section):
    host: str = "http://127.0.0.1:11434"
    model: str = Field("", description="Model tag, e.g. llama3.1:8b; empty = Ollama not used.")
    timeout_s: float = Field(120.0, gt=0, description="Deadline for one generation.")
    keep_alive: str = Field("10m", description="How long Ollama keeps the model loaded after a call.")


class OpenAISettings(_Section):
    """An OpenAI-compatible chat server: vLLM, the llama.cpp servers, LM Studio, LocalAI or a hosted API."""

    base_url: str = Field("", description="API base URL with its /v1, e.g. http://vllm:8000/v1; empty = not used.")
    api_key: SecretStr = Field(SecretStr(""), description="Bearer key; empty for servers that need none.")
    model: str = Field("", description="Model name as the server lists it under /v1/models.")
    timeout_s: float = Field(120.0, gt=0, description="Deadline for one generation.")
    max_tokens: int | None = Field(
        None, gt=0, description="Cap on generated tokens; a caller's larger max_tokens is cut."
    )
    response_format: Literal["json_schema", "json_object"] = Field(
        "json_schema",
        description="How a schema is sent: OpenAI's json_schema, or {type: json_object, schema} "
        "(llama-cpp-python's server, which refuses json_schema).",
    )
    system_role: bool = Field(
        True, description="false: system text goes into the first user turn (chat templates without a system role)."
    )
    extra_body: dict[str, Any] = Field(
        {}, description='JSON fields added to each request, e.g. {"repeat_penalty": 1.3} for small llama.cpp models.'
    )


class LlmSettings(_Section):
    backend: Literal["llamacpp", "ollama", "openai"] = Field(
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
    upvote_emoji: Annotated[tuple[str, ...], NoDecode] = Field(
        ("+1", "thumbsup"), description="Reactions that vote up."
    )
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
    # Waiting alerts are stored rows, not memory; the bound is there to say "slow down" when Slack's pace
    # (about one message a second per channel) falls far behind. 1,000 refused a 60 s storm of 1,000
    # notifications into one channel 277 times (bench/bot_load.py); 10,000 takes it.
    queue_size: int = Field(10_000, gt=0, description="Alerts waiting to be posted; beyond it webhooks get 503.")
    workers: int = Field(4, gt=0, description="Alert groups posted concurrently.")
    answer: bool = Field(True, description="Answer a new alert thread with a workflow.")
    flap_window_s: float = Field(
        300.0, ge=0, description="A group that fires again this soon after resolving is edited, not re-announced."
    )


class TrainSettings(_Section):
    """The learning loop: what is trained from what, and when a candidate may replace the served model."""

    base_model: str | None = Field(
        None, description="GGUF file or Hugging Face model directory to train; default: the packaged gemma3-270m."
    )
    output_dir: Path | None = Field(None, description="Datasets and adapters; default: <data_dir>/models/adapters.")
    min_new_feedback: int = Field(10, ge=0, description="Feedback since the last training a scheduled run needs.")
    gate_margin: float = Field(0.02, ge=0, le=1, description="How far overall_f1 may fall before the gate refuses.")
    eval_cases: Path | None = Field(
        None, description="Cases (opsflow eval format) the gate adds to the held-back answers; default: none."
    )
    seed: int = Field(0, description="Seed of the train/eval split, shuffles and the job.")
    eval_fraction: float = Field(0.2, gt=0, lt=1, description="Share of questions held back for evaluation.")
    min_pairs: int = Field(32, ge=0, description="Synthesised context-richness pairs fill the human pairs up to this.")
    max_per_question: int = Field(8, ge=1, description="Rows kept per question: no frequent incident dominates.")
    knowledge_questions: int = Field(200, ge=0, description="Questions built from the knowledge base, at most.")
    reload_s: float = Field(30.0, gt=0, description="How often serving looks for a newly promoted model.")
    lease_s: float = Field(60.0, gt=0, description="Scheduler lease; another replica takes over once it expires.")
    timezone: str = Field("UTC", description="Time zone of schedule cron expressions.")


_READ_COMMANDS = (
    ("kubectl", "get"), ("kubectl", "describe"), ("kubectl", "logs"), ("kubectl", "top"),
    ("kubectl", "rollout", "status"), ("kubectl", "rollout", "history"), ("dig",), ("ping", "-c"),
)  # fmt: skip
_WRITE_COMMANDS = (("kubectl", "rollout", "restart"), ("kubectl", "rollout", "undo"), ("kubectl", "scale"))


class ToolSettings(_Section):
    """The tools workflow steps may call (the catalogue), their allowlists, budgets and approvers."""

    prometheus_url: str | None = Field(None, description="Prometheus base URL; unset = no query tools.")
    http_probe_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Comma-separated host or host:port the HTTP probe may call; empty = no probe tool."
    )
    commands: tuple[tuple[str, ...], ...] = Field(
        _READ_COMMANDS, description='JSON list of argv prefixes of read-only commands: [["kubectl", "get"], ["dig"]].'
    )
    write_commands: tuple[tuple[str, ...], ...] = Field(
        _WRITE_COMMANDS, description="argv prefixes of commands that change the system: they run only when approved."
    )
    command_env: dict[str, str] = Field(
        {"PATH": "/usr/local/bin:/usr/bin:/bin"},
        description="The whole environment of commands (JSON), e.g. KUBECONFIG; nothing else of opsflow's is passed.",
    )
    webhooks: dict[str, str] = Field({}, description='JSON name → URL a write step may POST to: {"failover": "…"}.')
    approvers: dict[str, tuple[str, ...]] = Field(
        {}, description='JSON channel id → user ids who may approve writes there: {"C123": ["U1", "U2"]}.'
    )
    step_timeout_s: float = Field(10.0, gt=0, description="Deadline of one tool call.")
    run_timeout_s: float = Field(120.0, gt=0, description="Deadline of a run's probes, all together.")
    output_bytes: int = Field(65_536, ge=1024, description="Output kept from one call; a command is stopped beyond it.")
    run_output_bytes: int = Field(524_288, ge=1024, description="Output a run may collect before it stops.")
    concurrency: int = Field(4, ge=1, le=32, description="Independent probes run at the same time.")
    auto_check_channels: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Comma-separated channels where an alert's workflow gets its read-only checks run."
    )

    @field_validator("http_probe_hosts", "auto_check_channels", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(a.strip() for a in value.split(",") if a.strip())
        return value

    @field_validator("http_probe_hosts")
    @classmethod
    def _hosts_lower_case(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(h.lower() for h in value)

    @model_validator(mode="after")
    def _reads_cannot_cover_writes(self) -> ToolSettings:
        if any(not p for p in (*self.commands, *self.write_commands)):
            raise ValueError("tools.commands and tools.write_commands need non-empty argv prefixes")
        for read in self.commands:
            if covered := [w for w in self.write_commands if w[: len(read)] == read]:
                raise ValueError(f"tools.commands entry {list(read)} would allow the write command {list(covered[0])}")
        return self


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
    openai: OpenAISettings = OpenAISettings()
    llamacpp: LlamaCppSettings = LlamaCppSettings()
    slack: SlackSettings = SlackSettings()
    http: HttpSettings = HttpSettings()
    alerts: AlertSettings = AlertSettings()
    train: TrainSettings = TrainSettings()
    tools: ToolSettings = ToolSettings()

    @model_validator(mode="after")
    def _ollama_needs_a_model(self) -> Settings:
        if self.llm.backend == "ollama" and not self.ollama.model:
            raise ValueError("llm.backend=ollama needs a model: set OPSFLOW_OLLAMA__MODEL")
        if self.llm.backend == "openai" and not (self.openai.base_url and self.openai.model):
            raise ValueError("llm.backend=openai needs OPSFLOW_OPENAI__BASE_URL and OPSFLOW_OPENAI__MODEL")
        return self

    @property
    def records_url(self) -> str:
        return self.records.url or f"sqlite:///{self.data_dir / 'records.sqlite'}"
