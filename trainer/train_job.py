"""The training job: ``python -m trainer.train_job JOB.json`` trains a LoRA adapter with trl and peft.

The only module that imports the training stack, and only inside functions; ``trainer.jobs`` starts
it in a subprocess. It keeps stdout for ``JobProgress`` JSON lines (what libraries print goes to
stderr, the job's log), saves the PEFT adapter, converts it to GGUF, and writes ``result.json``.
A GGUF base is dequantised by transformers and cached as a Hugging Face directory, which the GGUF
converter also needs as ``--base``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from core.errors import TrainingError
from generation.prompts import review_messages
from generation.scorer import Scorer
from trainer.jobs import JobConfig, JobProgress, JobResult
from trainer.llamacpp_export import convert_adapter
from trainer.rewards import Verdict, completion_text, judge

logger = logging.getLogger("trainer.train_job")

# The turn format of llama-cpp-python's "gemma" chat format (LlamaCppSettings.chat_format), which serves
# the packaged GGUF: it has no chat template of its own, and training must see the serving prompt.
# System text is folded into the first user turn, as generation.llamacpp.fold_system_messages does.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% set ns = namespace(system='') %}"
    "{% for m in messages if m['role'] == 'system' %}"
    "{% set ns.system = ns.system + ('\n\n' if ns.system else '') + m['content'] %}{% endfor %}"
    "{% for m in messages if m['role'] != 'system' %}"
    "<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{% if loop.first and ns.system %}{{ ns.system + '\n\n' }}{% endif %}{{ m['content'] }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
REQUIRED_COLUMNS: dict[str, tuple[frozenset[str], ...]] = {
    "sft": (frozenset({"messages"}), frozenset({"prompt", "completion"})),
    "dpo": (frozenset({"prompt", "chosen", "rejected"}),),
    "kto": (frozenset({"prompt", "completion", "label"}),),
    "grpo": (frozenset({"prompt", "gold_steps", "n_sources"}),),
}

Emit = Callable[..., None]


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m trainer.train_job JOB.json", file=sys.stderr)
        return 2
    reports = _reports_channel()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = JobConfig.model_validate_json(Path(args[0]).read_bytes())
    started = time.monotonic()

    def emit(stage: str, **fields: Any) -> None:
        report = JobProgress(stage=stage, max_steps=config.max_steps, seconds=time.monotonic() - started, **fields)
        logger.info("progress %s", report.model_dump_json(exclude_none=True))
        reports.write(report.model_dump_json() + "\n")
        reports.flush()

    try:
        result = train(config, emit)
    except Exception:  # the job's one catch-all: the traceback goes to the log, the parent sees the exit code
        logger.exception("training job failed")
        return 1
    config.result_path.write_text(result.model_dump_json(indent=2), encoding="utf-8")
    emit("done", step=int(result.metrics["steps"]))
    return 0


def _reports_channel() -> IO[str]:
    """The original stdout for reports; fd 1 itself then points at stderr for whatever libraries print."""
    reports = os.fdopen(os.dup(1), "w", encoding="utf-8")
    sys.stdout.flush()
    os.dup2(2, 1)
    return reports


def train(config: JobConfig, emit: Emit) -> JobResult:
    """Load, train, save, export; raises on any failure."""
    # Before transformers is imported: the base is local, and a hub lookup would hang offline machines.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    rows = read_rows(config)  # before the slow imports: a bad dataset fails in a second
    import torch
    from datasets import Dataset

    started = time.monotonic()
    emit("load", message=f"loading {config.base_model}")
    device = _device(config.device, torch.cuda.is_available())
    torch.manual_seed(config.seed)
    base_dir = hf_base(config.base_model, config.cache_dir)
    model, tokenizer = _load(base_dir, device)
    dataset = Dataset.from_list(rows)
    progress = _progress_callback(emit)
    trainer = _trainer(config, model, tokenizer, dataset, device, progress)
    load_seconds = time.monotonic() - started
    trainer.train()
    emit("save", step=trainer.state.global_step, message=f"saving the adapter to {config.adapter_dir}")
    trainer.save_model(str(config.adapter_dir))
    gguf, gguf_error = None, None
    if config.export_gguf:
        emit("export", step=trainer.state.global_step, message="converting the adapter to GGUF")
        try:
            gguf = convert_adapter(config.adapter_dir, base_dir, config.gguf_path, config.cache_dir)
        except TrainingError as exc:
            logger.warning("no GGUF adapter: %s", exc)
            gguf_error = str(exc)
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    metrics = progress.metrics(trainer.state.global_step) | {
        "load_seconds": round(load_seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "device": device,
        "trainable_params": trainable,
    }
    if device == "cuda":
        metrics["gpu_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return JobResult(
        adapter_dir=config.adapter_dir,
        gguf_adapter=gguf,
        gguf_error=gguf_error,
        metrics=metrics,
        log_path=config.log_path,
    )


def _device(wanted: str, cuda: bool) -> str:
    if wanted == "cuda" and not cuda:
        raise TrainingError("device=cuda, but torch sees no CUDA device")
    return "cuda" if wanted == "cuda" or (wanted == "auto" and cuda) else "cpu"


def hf_base(base_model: Path, cache_dir: Path) -> Path:
    """A Hugging Face directory for ``base_model``: itself, or its GGUF dequantised once into ``cache_dir``.

    A model loaded from GGUF cannot be saved as is ("quantized with gguf"), so its weights move to a
    model built from the same config without the quantisation entry.
    """
    if base_model.is_dir():
        return base_model
    digest = hashlib.sha256()
    with base_model.open("rb") as raw:
        while block := raw.read(1 << 22):
            digest.update(block)
    target = cache_dir / "bases" / f"{base_model.stem}-{digest.hexdigest()[:12]}"
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("dequantising %s into %s (once)", base_model, target)
    tokenizer = AutoTokenizer.from_pretrained(base_model.parent, gguf_file=base_model.name)
    loaded = AutoModelForCausalLM.from_pretrained(base_model.parent, gguf_file=base_model.name)
    model_config = loaded.config
    del model_config.quantization_config
    model = AutoModelForCausalLM.from_config(model_config)
    model.load_state_dict(loaded.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        tokenizer.save_pretrained(staging)
        model.save_pretrained(staging)
        staging.chmod(0o755)
        staging.rename(target)
    except OSError:
        if not (target / "config.json").is_file():
            raise
        logger.info("another job dequantised %s first", base_model)  # same bytes, same result
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _load(base_dir: Path, device: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    if tokenizer.chat_template is None:
        tokenizer.chat_template = GEMMA_CHAT_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype)
    return model, tokenizer


def check_rows(method: str, rows: Sequence[Mapping[str, Any]], source: Path) -> None:
    """Raise ``TrainingError`` naming the first row without the columns ``method`` needs."""
    if not rows:
        raise TrainingError(f"{source} has no rows")
    shapes = REQUIRED_COLUMNS[method]
    for number, row in enumerate(rows, 1):
        if not any(shape <= row.keys() for shape in shapes):
            wanted = " or ".join(str(sorted(s)) for s in shapes)
            raise TrainingError(f"{source} row {number}: a {method} row needs {wanted}, it has {sorted(row)}")


def read_rows(config: JobConfig) -> list[dict[str, Any]]:
    """The rows of ``train.jsonl``, checked against the method's format."""
    rows = []
    with config.train_file.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise TrainingError(f"{config.train_file} line {number} is not JSON: {exc}") from exc
    check_rows(config.method, rows, config.train_file)
    return rows


def _trainer(config: JobConfig, model: Any, tokenizer: Any, dataset: Any, device: str, callback: Any) -> Any:
    """The trl trainer for ``config.method``, with a LoRA adapter on ``model``."""
    common: dict[str, Any] = {
        "output_dir": str(config.output_dir / "checkpoints"),
        "max_steps": config.max_steps,
        "learning_rate": config.learning_rate,
        "per_device_train_batch_size": config.batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "seed": config.seed,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "disable_tqdm": True,
        "use_cpu": device == "cpu",
        "bf16": device == "cuda",
    }
    parts = {"train_dataset": dataset, "processing_class": tokenizer} | _adapter(config, model)
    match config.method:
        case "sft":
            from trl import SFTConfig, SFTTrainer

            return SFTTrainer(args=SFTConfig(max_length=config.max_length, **common), callbacks=[callback], **parts)
        case "dpo":
            from trl import DPOConfig, DPOTrainer

            dpo = DPOConfig(max_length=config.max_length, beta=config.beta, **common)
            return DPOTrainer(args=dpo, callbacks=[callback], **parts)
        case "kto":
            from trl import KTOConfig, KTOTrainer

            kto = KTOConfig(max_length=config.max_length, beta=config.beta, **common)
            return KTOTrainer(args=kto, callbacks=[callback], **parts)
        case "grpo":
            from trl import GRPOConfig, GRPOTrainer

            grpo = GRPOConfig(
                num_generations=config.num_generations,
                max_completion_length=config.max_completion_length,
                temperature=config.temperature,
                **common,
            )
            reward = workflow_reward(config)
            return GRPOTrainer(args=grpo, reward_funcs=[reward], callbacks=[callback], **parts)
    raise TrainingError(f"unknown method {config.method}")


def _adapter(config: JobConfig, model: Any) -> dict[str, Any]:
    """The model and peft_config arguments: a new LoRA adapter, or ``init_adapter`` trained further.

    With no ref_model, trl's dpo/kto reference is the base with the new adapter disabled, or a frozen
    copy of ``init_adapter``; no second model is loaded either way.
    """
    from peft import LoraConfig, PeftModel

    if config.init_adapter is not None:
        return {"model": PeftModel.from_pretrained(model, str(config.init_adapter), is_trainable=True)}
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_target_modules),
        task_type="CAUSAL_LM",
    )
    return {"model": model, "peft_config": lora}


def workflow_reward(config: JobConfig) -> Callable[..., list[float]]:
    """trl's reward function over ``trainer.rewards.judge``, with the Scorer's verdict on each readable
    workflow when the job names a Scorer model (FlowXpert: the Scorer is the Planner's RL reward); logs
    the means of the rubric, STEPScore and verdict too."""
    weights = config.reward_weights
    scorer = _scorer(config)

    def workflow_reward(
        prompts: Sequence[Any],
        completions: Sequence[Any],
        gold_steps: Sequence[Any],
        n_sources: Sequence[int],
        **kwargs: Any,
    ) -> list[float]:
        formats = kwargs.get("reply_format") or ["json"] * len(completions)
        verdicts = [
            judge(completion_text(c), g, n, f)
            for c, g, n, f in zip(completions, gold_steps, n_sources, formats, strict=True)
        ]
        if scorer is not None:
            verdicts = asyncio.run(_rate(scorer, verdicts, prompts, n_sources))
        if log_metric := kwargs.get("log_metric"):
            log_metric("readable", statistics.fmean(v.readable for v in verdicts))
            log_metric("rubric", statistics.fmean(v.rubric for v in verdicts))
            log_metric("stepscore", statistics.fmean(v.stepscore for v in verdicts))
            if rated := [v.scorer for v in verdicts if v.scorer is not None]:
                log_metric("scorer", statistics.fmean(rated))
        return [v.reward(weights) for v in verdicts]

    return workflow_reward


def _scorer(config: JobConfig) -> Scorer | None:
    """The Scorer the reward asks, on llama.cpp as it serves; None without a model or a weight for it."""
    if config.scorer_model is None or not config.reward_weights.scorer:
        return None
    from core.settings import LlamaCppSettings
    from generation.llamacpp import LlamaCppChatModel

    adapter = str(config.scorer_adapter) if config.scorer_adapter is not None else None
    settings = LlamaCppSettings(model_path=str(config.scorer_model), lora_path=adapter)
    return Scorer(LlamaCppChatModel(settings, config.cache_dir))


async def _rate(
    scorer: Scorer, verdicts: Sequence[Verdict], prompts: Sequence[Any], n_sources: Sequence[int]
) -> list[Verdict]:
    """The verdicts with the Scorer's on each readable workflow, asked with the sources of the prompt it was
    planned from (the prompt's user turn)."""
    rated = []
    for verdict, prompt, n in zip(verdicts, prompts, n_sources, strict=True):
        if verdict.workflow is not None:
            numbers = {str(i): i for i in range(1, n + 1)}
            messages = review_messages(str(prompt[-1]["content"]), verdict.workflow, numbers)
            verdict = verdict.model_copy(update={"scorer": (await scorer.rate(messages)).value})
        rated.append(verdict)
    return rated


def _progress_callback(emit: Emit) -> Any:
    """A trl callback that reports each logged step and times every step."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def __init__(self) -> None:
            self.losses: list[float] = []
            self.rewards: list[float] = []
            self.step_seconds: list[float] = []
            self._step_started = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._step_started = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.step_seconds.append(time.perf_counter() - self._step_started)

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
        ) -> None:
            if not logs or "loss" not in logs:
                return  # the end-of-training summary, or an eval
            self.losses.append(float(logs["loss"]))
            reward = logs.get("reward")
            if reward is not None:
                self.rewards.append(float(reward))
            emit("train", step=state.global_step, loss=float(logs["loss"]), reward=reward)

        def metrics(self, steps: int) -> dict[str, Any]:
            timed = self.step_seconds[1:] or self.step_seconds
            return {
                "steps": steps,
                "losses": self.losses,
                "rewards": self.rewards,
                "first_step_seconds": round(self.step_seconds[0], 3) if self.step_seconds else None,
                "seconds_per_step": round(statistics.fmean(timed), 3) if timed else None,
                "train_seconds": round(sum(self.step_seconds), 2),
            }

    return Progress()


if __name__ == "__main__":
    sys.exit(main())
