"""Bad training inputs: wrong config values and unusable datasets get errors that name the value and the fix."""

from __future__ import annotations

import json

import pytest
import torch
from datasets import Dataset
from transformers import AutoTokenizer

from grace_st.train.config import GraceConfig
from grace_st.train.data import load_source, prepare_dataset, prompt_fields


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("objective", "contrastive", "objective='contrastive' is not valid"),
        ("reward_variant", "best", "reward_variant='best'"),
        ("reward_temperature", 0.0, "reward_temperature=0.0 must be > 0"),
        ("anchor_temperature", -1.0, "anchor_temperature=-1.0 must be > 0"),
        ("pooled_span", "input", "pools no rationale"),
        ("max_completion_length", 0, "max_completion_length=0"),
        ("hard_negative_weight", float("nan"), "hard_negative_weight=nan must be a finite number"),
        ("heldout_eval", "mteb", "heldout_eval='mteb'"),
        ("learning_rate", -1e-6, "learning_rate=-1e-06 must be a finite number >= 0"),  # before the model loads
    ],
)
def test_config_errors_name_the_value(tmp_path, field, value, message):
    with pytest.raises(ValueError, match=message):
        GraceConfig(output_dir=str(tmp_path), **{field: value})


def test_config_defaults_are_the_reference_recipe(tmp_path):
    config = GraceConfig(output_dir=str(tmp_path))
    assert (config.num_generations, config.temperature, config.anchor_temperature) == (8, 1.0, 0.5)
    assert (config.learning_rate, config.beta, config.epsilon, config.scale_rewards) == (1e-6, 0.0, 0.2, "none")
    assert (config.consistency_weight, config.hard_negative_weight, config.reward_temperature) == (0.2, 0.2, 0.1)
    assert (config.truncation_penalty, config.max_completion_length) == (-1.0, 2048)
    assert config.reward_variant == "reference"
    # bf16 only where the GPU has it: TRL's own default (True) would refuse to start on a CPU
    assert config.bf16 is bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


@pytest.fixture(scope="module")
def tokenizer(tiny_backbone):
    return AutoTokenizer.from_pretrained(tiny_backbone)


def test_missing_columns_are_named_with_the_fix():
    with pytest.raises(ValueError, match=r"lacks \['negative'\].*rename_column"):
        prepare_dataset(Dataset.from_list([{"query": "a", "positive": "b"}]), "supervised")
    with pytest.raises(ValueError, match=r"lacks \['text'\]"):
        prepare_dataset(Dataset.from_list([{"query": "a"}]), "unsupervised")


def test_empty_dataset_and_all_unusable_rows_are_errors():
    with pytest.raises(ValueError, match="empty"):
        prepare_dataset(Dataset.from_dict({"text": []}), "unsupervised")
    with pytest.warns(UserWarning, match="Dropped 2 of 2"), pytest.raises(ValueError, match="No usable training rows"):
        prepare_dataset(Dataset.from_list([{"text": " "}, {"text": ""}]), "unsupervised")


def test_unusable_and_too_long_rows_are_dropped_and_counted(tokenizer):
    rows = [
        {"query": "q1", "positive": "a short positive", "negative": "n1"},
        {"query": "", "positive": "empty query", "negative": "n2"},
        {"query": "q3", "positive": "word " * 200, "negative": "n3"},
        {"query": "q4", "positive": "another short one", "negative": "n4"},
    ]
    with pytest.warns(UserWarning, match=r"Dropped 2 of 4 .* 1 with an empty .* 1 whose 'positive' is longer"):
        data = prepare_dataset(Dataset.from_list(rows), "supervised", tokenizer, max_input_tokens=64)
    assert data.column_names == ["prompt"]  # TRL hands rollout_func the prompt only: it carries query and negative
    assert [prompt_fields(prompt) for prompt in data["prompt"]] == [
        {"text": "a short positive", "query": "q1", "negative": "n1"},
        {"text": "another short one", "query": "q4", "negative": "n4"},
    ]


def test_local_files_load_by_extension(tmp_path):
    rows = [{"text": "one"}, {"text": "two"}]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows))
    csv = tmp_path / "d.csv"
    csv.write_text("text\none\ntwo\n")
    for path in (jsonl, csv):
        assert load_source(str(path))["text"] == ["one", "two"]
    with pytest.raises(ValueError, match="unknown file type '.txt'"):
        (tmp_path / "d.txt").write_text("x")
        load_source(str(tmp_path / "d.txt"))


def test_unknown_sources_are_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither an existing local file"):
        load_source(str(tmp_path / "nope.jsonl"))
    with pytest.raises(ValueError, match="built-ins are"):
        load_source("grace:imdb")
    with pytest.raises(FileNotFoundError, match="Could not load the Hub dataset 'nobody/nothing'"):
        load_source("nobody/nothing")


def test_builtin_wordnet_has_the_supervised_columns():
    data = load_source("grace:wordnet")
    assert set(data.column_names) == {"query", "positive", "negative"} and len(data) > 10_000


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_an_empty_data_file_is_named(tmp_path, content):
    path = tmp_path / "rows.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match=f"Dataset file '{path}' is empty"):
        load_source(str(path))
