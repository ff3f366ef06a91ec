"""Training jobs as the bot sees them: a validated ``JobConfig`` in, a ``JobResult`` out.

The work runs in a subprocess (``python -m trainer.train_job JOB.json``), so this module imports
nothing of the training stack (trl, peft, transformers, torch) and the bot process never does.
Everything a job writes lives in its ``output_dir``: ``job.json`` (the config), ``train.log`` (the
job's whole log), ``adapter/`` (the PEFT LoRA adapter), ``adapter.gguf`` (the same for llama.cpp and
Ollama) and ``result.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.errors import TrainingError
from trainer.rewards import RewardWeights

Method = Literal["sft", "dpo", "grpo", "kto"]
Target = Literal["planner", "scorer"]
LOG_TAIL_LINES = 40
_GRPO_ONLY = frozenset(
    {"num_generations", "max_completion_length", "temperature", "reward_weights", "scorer_model", "scorer_adapter"}
)
_PREFERENCE_ONLY = frozenset({"beta"})
_LORA_SHAPE = frozenset({"lora_r", "lora_alpha", "lora_dropout", "lora_target_modules"})


def _default_cache_dir() -> Path:
    # Where scripts/setup keeps the llama-cpp-python wheel and sdist.
    return Path.home() / ".cache" / "opsflow-wheels"


class JobConfig(BaseModel):
    """One training job, validated before anything runs; serialised to JSON for the subprocess."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Method
    target: Target = "planner"
    base_model: Path = Field(description="A GGUF file (dequantised by transformers) or a Hugging Face model directory.")
    dataset_dir: Path = Field(
        description="Holds train.jsonl in trl's format for the method: sft {messages} or {prompt, completion}; "
        "dpo {prompt, chosen, rejected}; kto {prompt, completion, label}; grpo {prompt, gold_steps, n_sources}."
    )
    output_dir: Path
    max_steps: int = Field(50, ge=1)
    learning_rate: float = Field(2e-4, gt=0, lt=1)
    batch_size: int = Field(
        4, ge=1, description="Rows per device step (grpo: completions, num_generations per prompt)."
    )
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_length: int = Field(
        1024, ge=16, description="sft/dpo/kto: tokens of prompt plus completion; longer rows are truncated."
    )
    lora_r: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_target_modules: tuple[str, ...] = Field(("q_proj", "k_proj", "v_proj", "o_proj"), min_length=1)
    init_adapter: Path | None = Field(
        None,
        description="A PEFT adapter on the same base to train on (SFT's, before DPO); it fixes the LoRA shape, "
        "and dpo/kto keep a frozen copy of it as the reference.",
    )
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda (bf16) when present, else cpu.")
    beta: float = Field(0.1, gt=0, description="dpo/kto: how far the policy may move from the base.")
    num_generations: int = Field(4, ge=2, description="grpo: completions sampled per prompt.")
    max_completion_length: int = Field(256, ge=8, description="grpo: tokens generated per completion.")
    temperature: float = Field(1.0, gt=0, description="grpo: sampling temperature.")
    reward_weights: RewardWeights = RewardWeights()
    scorer_model: Path | None = Field(
        None, description="grpo: the Scorer's GGUF model; its verdict joins the reward (none: rubric and STEPScore)."
    )
    scorer_adapter: Path | None = Field(None, description="grpo: the Scorer's GGUF LoRA adapter on scorer_model.")
    export_gguf: bool = Field(True, description="Convert the adapter to GGUF (llama.cpp's convert_lora_to_gguf.py).")
    cache_dir: Path = Field(
        default_factory=_default_cache_dir,
        description="Kept across jobs: the llama-cpp-python sdist (conversion scripts) and dequantised GGUF bases.",
    )
    timeout_s: float = Field(3600.0, gt=0, description="The job is killed after this long.")

    @model_validator(mode="after")
    def _consistent(self) -> JobConfig:
        if self.method == "grpo" and self.target != "planner":
            raise ValueError("grpo trains the planner (its reward judges workflows); train the scorer with dpo")
        if self.method != "grpo" and (stray := self._changed(_GRPO_ONLY)):
            raise ValueError(f"{stray} only apply to grpo, not {self.method}")
        if self.method not in ("dpo", "kto") and (stray := self._changed(_PREFERENCE_ONLY)):
            raise ValueError(f"{stray} only apply to dpo and kto, not {self.method}")
        if self.init_adapter is not None and (stray := self._changed(_LORA_SHAPE)):
            raise ValueError(f"{stray} cannot change the shape of init_adapter; leave them unset")
        rows = self.batch_size * self.gradient_accumulation_steps
        if self.method == "grpo" and rows % self.num_generations:
            raise ValueError(
                f"grpo needs batch_size × gradient_accumulation_steps ({rows}) to be a multiple of "
                f"num_generations ({self.num_generations}): each prompt's completions are compared in one batch"
            )
        if self.method == "grpo" and not (self.reward_weights.rubric or self.reward_weights.stepscore):
            raise ValueError("grpo needs a positive reward weight")
        if self.method == "kto" and self.batch_size < 2:
            raise ValueError("kto needs batch_size ≥ 2: it estimates its KL term from mismatched rows of a batch")
        if self.output_dir == self.dataset_dir:
            raise ValueError("output_dir must differ from dataset_dir")
        return self

    def _changed(self, names: frozenset[str]) -> list[str]:
        """Which of ``names`` differ from their defaults (set on purpose, so meant to matter)."""
        fields = type(self).model_fields
        return sorted(n for n in names if getattr(self, n) != fields[n].get_default(call_default_factory=True))

    @property
    def train_file(self) -> Path:
        return self.dataset_dir / "train.jsonl"

    @property
    def config_path(self) -> Path:
        return self.output_dir / "job.json"

    @property
    def log_path(self) -> Path:
        return self.output_dir / "train.log"

    @property
    def result_path(self) -> Path:
        return self.output_dir / "result.json"

    @property
    def adapter_dir(self) -> Path:
        return self.output_dir / "adapter"

    @property
    def gguf_path(self) -> Path:
        return self.output_dir / "adapter.gguf"


class JobProgress(BaseModel):
    """A progress report, one JSON line on the job's stdout."""

    model_config = ConfigDict(frozen=True)

    stage: Literal["load", "train", "save", "export", "done"]
    step: int = 0
    max_steps: int
    loss: float | None = None
    reward: float | None = Field(None, description="grpo: mean reward of the step's completions.")
    seconds: float = Field(description="Since the job started.")
    message: str = ""


class JobResult(BaseModel):
    """What a finished job produced.

    ``metrics`` holds ``steps``, ``losses`` (one per step), ``rewards`` (grpo), ``seconds_per_step``
    (mean after the first step, which carries warm-up), ``first_step_seconds``, ``load_seconds``,
    ``train_seconds``, ``peak_rss_mb``, ``device``, ``trainable_params``.
    """

    model_config = ConfigDict(frozen=True)

    adapter_dir: Path
    gguf_adapter: Path | None = None
    gguf_error: str | None = Field(None, description="Why there is no GGUF adapter, when there is none.")
    metrics: dict[str, Any]
    log_path: Path


ProgressCallback = Callable[[JobProgress], Awaitable[None]]


async def run_job(config: JobConfig, *, on_progress: ProgressCallback | None = None) -> JobResult:
    """Run ``config`` in a training subprocess; ``on_progress`` gets each report as it comes.

    Raises ``TrainingError`` (with the end of the log) when the job fails or passes ``timeout_s``.
    Cancelling the call kills the job.
    """
    log = await asyncio.to_thread(_prepare, config)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "trainer.train_job",
            str(config.config_path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            start_new_session=True,  # its own process group, so a kill reaches the converter it spawns too
        )
    finally:
        await asyncio.to_thread(log.close)
    try:
        async with asyncio.timeout(config.timeout_s):
            await _follow(process, config, on_progress)
            code = await process.wait()
    except TimeoutError:
        await _kill(process)
        raise TrainingError(
            f"training job timed out after {config.timeout_s:g} s\n{await _tail(config.log_path)}"
        ) from None
    except BaseException:
        await _kill(process)
        raise
    if code != 0:
        raise TrainingError(f"training job failed (exit code {code})\n{await _tail(config.log_path)}")
    return await asyncio.to_thread(_read_result, config)


def _prepare(config: JobConfig) -> IO[bytes]:
    """Check the inputs exist, write the config, and open the log the job writes to."""
    if not config.base_model.exists():
        raise TrainingError(f"base model not found: {config.base_model}")
    if config.init_adapter is not None and not (config.init_adapter / "adapter_config.json").is_file():
        raise TrainingError(f"init_adapter is not a PEFT adapter directory: {config.init_adapter}")
    if not config.train_file.is_file():
        raise TrainingError(f"training data not found: {config.train_file}")
    config.output_dir.mkdir(parents=True, exist_ok=True)
    config.result_path.unlink(missing_ok=True)
    config.config_path.write_text(config.model_dump_json(indent=2), encoding="utf-8")
    return config.log_path.open("wb")


async def _follow(process: asyncio.subprocess.Process, config: JobConfig, on_progress: ProgressCallback | None) -> None:
    assert process.stdout is not None
    async for line in process.stdout:
        try:
            report = JobProgress.model_validate_json(line)
        except ValidationError:
            continue  # the job keeps stdout for reports; anything else belongs to its log
        if on_progress is not None:
            await on_progress(report)


async def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()


async def _tail(path: Path) -> str:
    def read() -> str:
        with path.open(encoding="utf-8", errors="replace") as log:
            lines = deque(log, maxlen=LOG_TAIL_LINES)
        return f"last lines of {path}:\n" + "".join(lines)

    return await asyncio.to_thread(read)


def _read_result(config: JobConfig) -> JobResult:
    try:
        return JobResult.model_validate_json(config.result_path.read_bytes())
    except (OSError, ValidationError) as exc:
        raise TrainingError(f"the training job left no readable result in {config.result_path}: {exc}") from exc
