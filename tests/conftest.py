"""Shared fixtures: tiny random causal LMs built offline, and a GRACE model on them.

The Hub is never contacted: ``HF_HUB_OFFLINE`` is set before any Hugging Face library is imported, and the caches
that a test could write (Hub, dynamic modules) point into a per-session temporary folder. The embedded default
backbone keeps its normal GRACE cache, so its one-time conversion is shared across runs.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path


_SESSION_TMP = Path(tempfile.mkdtemp(prefix="grace-tests-"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = str(_SESSION_TMP / "hf_home")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402


# Text only used to fit the tiny test tokenizer's BPE merges (no model learns from it).
_TOKENIZER_CORPUS = [
    "A cat sat on the mat and looked out of the window at the rain.",
    "Stock markets fell sharply today after the central bank raised interest rates.",
    "The mitochondria is the part of the cell that produces most of its chemical energy.",
    "Read and analyze the following text, then provide your reasoning. Finally, generate an understanding.",
    "what do cats sit on? where is the nearest train station? how does photosynthesis work?",
    "Query: document: passage: system user assistant analysis think reasoning rationale embedding 0123456789",
]
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_tiny_backbone(path: Path, *, chat_template: str | None = CHATML, seed: int = 0) -> Path:
    """A 2-layer random Llama with a byte-level BPE tokenizer trained in-process, saved to ``path``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_TOKENIZER_CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|pad|>")
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(path)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_backbone() -> Path:
    """Folder of a tiny random chat backbone."""
    return make_tiny_backbone(_SESSION_TMP / "tiny-chat")


@pytest.fixture(scope="session")
def tiny_base_backbone() -> Path:
    """Folder of a tiny random backbone whose tokenizer has no chat template."""
    return make_tiny_backbone(_SESSION_TMP / "tiny-base", chat_template=None, seed=1)


@pytest.fixture
def build_tiny(tiny_backbone):
    """Build a GRACE model on the tiny backbone with short rationales; settings can be overridden."""
    from grace_st import build_grace_model

    def build(**settings):
        settings = {"max_new_tokens": 8, "max_input_tokens": 64, **settings}
        return build_grace_model(str(tiny_backbone), device="cpu", **settings)

    return build


@pytest.fixture
def grace_tiny(build_tiny):
    return build_tiny()


TEXTS = [
    "A cat sat on the mat.",
    "Stock markets fell sharply today after the announcement.",
    "The mitochondria is the powerhouse of the cell.",
    "where is the nearest train station?",
    "Photosynthesis turns light into chemical energy in plants.",
]


@pytest.fixture(scope="session")
def ending_backbone(tiny_backbone, tmp_path_factory) -> Path:
    """The tiny backbone with many end tokens, so random rationales end at varied lengths and rewards differ."""
    from transformers import AutoTokenizer, GenerationConfig

    path = tmp_path_factory.mktemp("ending") / "tiny"
    shutil.copytree(tiny_backbone, path)
    config = GenerationConfig.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    config.eos_token_id = [tokenizer.eos_token_id, *range(120, 260)]
    config.save_pretrained(path)
    return path


@pytest.fixture
def data_file(tmp_path):
    """Twelve supervised triples as a local .jsonl file, the way a user passes their own data."""
    path = tmp_path / "triples.jsonl"
    rows = [{"query": f"query {i}", "positive": f"positive {i}", "negative": f"negative {i}"} for i in range(12)]
    path.write_text("\n".join(json.dumps(row) for row in rows))
    return path
