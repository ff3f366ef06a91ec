"""A tiny random causal LM with a locally trained tokenizer, saved as a Hugging Face model directory.

No download: the model comes from a ``LlamaConfig`` (hidden 64, 2 layers) with random weights and the
tokenizer is a byte-level BPE trained here on workflow-ish text, so training jobs can run on it in
seconds. Needs the ``train`` extra; ``require_train`` skips a test without it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL = ["<pad>", "<bos>", "<eos>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>"]
_CORPUS = [
    'Question: the pod is crash looping. {"title": "Pod crash loop", "steps": [{"id": "s1", "type": "process", '
    '"text": "Check the pod logs", "next": "s2", "yes": null, "no": null, "sources": [1]}]}',
    "Check the pod logs. Restart the deployment. Is the node ready? Escalate to the database team.",
    "Inspect disk usage on the node. Delete old snapshots. Scale the replica set. Resolved.",
    "Query the error rate in Prometheus. Roll back the release if errors rose after the deploy.",
]


def build_tiny_model(directory: Path, *, seed: int = 0) -> Path:
    """Save a tiny random Llama model and its tokenizer (with a chat template) into ``directory``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(_CORPUS * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def _train_extra_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) for m in ("trl", "peft", "transformers", "datasets", "torch"))


require_train = pytest.mark.skipif(
    not _train_extra_installed(), reason="needs the train extra (pip install -e '.[train]')"
)
