"""PEFT LoRA adapter → GGUF LoRA adapter, for llama.cpp (``lora_path``) and Ollama (``ADAPTER``).

The converter is llama.cpp's own ``convert_lora_to_gguf.py``. No wheel ships it, but the
llama-cpp-python sdist vendors llama.cpp: the sdist is fetched once through pip (the package registry,
or a cached copy under ``cache_dir``, where scripts/setup leaves it) and the script with its
``conversion`` and ``gguf-py`` packages is unpacked beside it. The converter needs torch and
transformers, so it runs as a subprocess of the training job, never in the bot.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from core.errors import TrainingError

# Keep in step with the llm extra in pyproject.toml and scripts/setup.
LLAMA_CPP_PYTHON_VERSION = "0.3.36"
_VENDORED = ("convert_lora_to_gguf.py", "conversion/", "gguf-py/")
_TIMEOUT_S = 900


def converter(cache_dir: Path) -> Path:
    """``convert_lora_to_gguf.py``, unpacked under ``cache_dir`` from the llama-cpp-python sdist."""
    tools = cache_dir / f"llama.cpp-{LLAMA_CPP_PYTHON_VERSION}"
    script = tools / "convert_lora_to_gguf.py"
    if script.is_file():
        return script
    sdist = _sdist(cache_dir)
    prefix = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}/vendor/llama.cpp/"
    staging = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".llama.cpp-"))
    try:
        with tarfile.open(sdist) as archive:
            members = [
                m.replace(name=m.name.removeprefix(prefix))
                for m in archive.getmembers()
                if m.name.startswith(prefix) and m.name.removeprefix(prefix).startswith(_VENDORED)
            ]
            archive.extractall(staging, members=members, filter="data")
        if not (staging / script.name).is_file():
            raise TrainingError(f"{sdist} holds no vendor/llama.cpp/{script.name}")
        staging.chmod(0o755)  # mkdtemp makes it private
        staging.rename(tools)  # atomic: a concurrent job finds either nothing or the whole tree
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return script


def _sdist(cache_dir: Path) -> Path:
    sdist = cache_dir / f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"
    if sdist.is_file():
        return sdist
    cache_dir.mkdir(parents=True, exist_ok=True)
    spec = f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}"
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:", "-d"]
    done = subprocess.run([*command, str(cache_dir), spec], capture_output=True, text=True, timeout=_TIMEOUT_S)
    if done.returncode != 0 or not sdist.is_file():
        raise TrainingError(f"cannot fetch the {spec} sdist for llama.cpp's converter: {done.stderr[-2000:]}")
    return sdist


def convert_adapter(adapter_dir: Path, base_dir: Path, outfile: Path, cache_dir: Path) -> Path:
    """Write ``adapter_dir`` (PEFT) as a GGUF LoRA adapter; ``base_dir`` is the base's Hugging Face directory.

    Raises ``TrainingError`` with the converter's output when llama.cpp cannot convert this model.
    """
    script = converter(cache_dir)
    command = [sys.executable, str(script), "--base", str(base_dir), "--outfile", str(outfile), "--outtype", "f16"]
    done = subprocess.run([*command, str(adapter_dir)], capture_output=True, text=True, timeout=_TIMEOUT_S)
    if done.returncode != 0 or not outfile.is_file():
        raise TrainingError(f"convert_lora_to_gguf.py failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return outfile
