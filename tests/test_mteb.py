"""GRACE through mteb: registration, prompts, offline and mock tasks, the encoding cache, the card's model-index."""

from __future__ import annotations

import warnings
from pathlib import Path

import mteb
import numpy as np
import pytest
import yaml
from mteb.mocks.mock_tasks import MockClassificationTask, MockRetrievalTask, MockSTSTask

from grace_st import load_mteb_model, save_grace_model
from grace_st.eval_tasks import OFFLINE_TASKS, WordNetDefinitionRetrieval, WordNetSensePairClassification
from grace_st.mteb_encoder import GraceEncoder


@pytest.fixture
def saved(build_tiny, tmp_path):
    return save_grace_model(build_tiny(), tmp_path / "grace-tiny")


def test_get_model_on_a_registered_local_folder_returns_the_grace_encoder(saved, tmp_path):
    encoder = load_mteb_model(saved, name="test/grace-tiny", cache=str(tmp_path / "c.sqlite"))
    assert isinstance(encoder, GraceEncoder)
    again = mteb.get_model("test/grace-tiny", cache=False)
    assert isinstance(again, GraceEncoder)
    meta = mteb.get_model_meta("test/grace-tiny")
    assert meta.embed_dim == 32 and meta.n_parameters == sum(p.numel() for p in again.model[0].model.parameters())
    assert meta.similarity_fn_name.value == "cosine" and meta.use_instructions and meta.max_tokens == 64


def test_offline_and_mock_tasks_give_scores(grace_tiny, tmp_path):
    encoder = GraceEncoder(grace_tiny, cache=str(tmp_path / "c.sqlite"))
    tasks = [cls() for cls in OFFLINE_TASKS.values()] + [MockSTSTask(), MockRetrievalTask(), MockClassificationTask()]
    result = mteb.evaluate(encoder, tasks, cache=None, show_progress_bar=False)
    scores = {r.task_name: r.get_score() for r in result.task_results}
    assert set(scores) == {task.metadata.name for task in tasks}
    assert all(np.isfinite(score) for score in scores.values())


def _record_prompts(monkeypatch, encoder):
    seen = []
    original = type(encoder.model[0]).preprocess

    def spy(self, inputs, prompt=None, **kwargs):
        seen.append((prompt, list(inputs)))
        return original(self, inputs, prompt=prompt, **kwargs)

    monkeypatch.setattr(type(encoder.model[0]), "preprocess", spy)
    return seen


def test_query_and_document_prompts_reach_the_module(grace_tiny, tmp_path, monkeypatch):
    grace_tiny.prompts = {"query": "QUERY INSTRUCTION", "document": "DOCUMENT INSTRUCTION"}
    encoder = GraceEncoder(grace_tiny, cache=False)
    seen = _record_prompts(monkeypatch, encoder)
    task = WordNetDefinitionRetrieval(n_queries=3)
    mteb.evaluate(encoder, [task], cache=None, show_progress_bar=False)
    task.load_data()
    split = task.dataset["default"]["test"]
    by_prompt = {}
    for prompt, texts in seen:
        by_prompt.setdefault(prompt, set()).update(texts)
    assert by_prompt["QUERY INSTRUCTION"] == set(split["queries"]["text"])
    assert by_prompt["DOCUMENT INSTRUCTION"] == set(split["corpus"]["text"])


def test_per_task_instructions_follow_use_instructions(grace_tiny, monkeypatch):
    grace_tiny.prompts = {"query": "Q", "document": "D", "PairClassification": "PAIR INSTRUCTION"}
    for use_instructions, expected in ((True, {"PAIR INSTRUCTION"}), (False, {None})):
        encoder = GraceEncoder(grace_tiny, cache=False, use_instructions=use_instructions)
        seen = _record_prompts(monkeypatch, encoder)
        mteb.evaluate(encoder, [WordNetSensePairClassification(n_examples=2)], cache=None, show_progress_bar=False)
        assert {prompt for prompt, _ in seen} == expected


def test_cache_skips_generation_and_keeps_scores(grace_tiny, tmp_path, monkeypatch):
    calls = []
    generator_type = type(grace_tiny[0])
    original = generator_type.forward

    def counting(self, features, **kwargs):
        calls.append(len(features["input_ids"]))
        return original(self, features, **kwargs)

    monkeypatch.setattr(generator_type, "forward", counting)
    path = str(tmp_path / "cache.sqlite")
    tasks = [WordNetDefinitionRetrieval(n_queries=4), WordNetSensePairClassification(n_examples=4)]
    first = mteb.evaluate(GraceEncoder(grace_tiny, cache=path), tasks, cache=None, show_progress_bar=False)
    assert calls
    calls.clear()
    second_encoder = GraceEncoder(grace_tiny, cache=path)  # a new process would see the same file
    second = mteb.evaluate(second_encoder, tasks, cache=None, show_progress_bar=False)
    assert calls == [] and second_encoder.texts_generated == 0
    assert [r.get_score() for r in first.task_results] == [r.get_score() for r in second.task_results]


def test_a_killed_corpus_keeps_its_finished_chunks_and_memory_is_per_chunk(grace_tiny, tmp_path, monkeypatch):
    """Each chunk is in the cache before the next is encoded; no call holds more than one chunk's token states."""
    import grace_st.rationales as rationales

    monkeypatch.setattr(rationales, "CHUNK_TEXTS", 2)
    texts = [f"text number {i} about cats" for i in range(5)]
    sizes, original = [], type(grace_tiny).encode

    def encode_then_die(self, sentences, *args, **kwargs):
        sizes.append(len(sentences))
        if len(sizes) == 2:
            raise KeyboardInterrupt  # killed while the second chunk is encoded
        return original(self, sentences, *args, **kwargs)

    monkeypatch.setattr(type(grace_tiny), "encode", encode_then_die)
    path = str(tmp_path / "c.sqlite")
    with pytest.raises(KeyboardInterrupt):
        GraceEncoder(grace_tiny, cache=path).encode_texts(texts, prompt=None, batch_size=1)
    monkeypatch.setattr(type(grace_tiny), "encode", original)
    again = GraceEncoder(grace_tiny, cache=path)
    vectors = again.encode_texts(texts, prompt=None, batch_size=1)
    assert again.texts_generated == 3, "the first chunk (2 texts) came from the cache"
    assert np.allclose(vectors, grace_tiny.encode(texts), atol=1e-5)
    assert max(sizes) == 2


def test_cached_vectors_equal_sentence_transformers_encode(grace_tiny, tmp_path):
    encoder = GraceEncoder(grace_tiny, cache=str(tmp_path / "c.sqlite"))
    texts = ["A cat sat on the mat.", "where is the nearest train station?", "A cat sat on the mat."]
    fresh = encoder.encode_texts(texts, prompt=None)
    cached = encoder.encode_texts(texts, prompt=None)
    direct = grace_tiny.encode(texts)
    assert np.allclose(fresh, direct, atol=1e-5) and np.array_equal(fresh, cached)
    assert encoder.texts_generated == 2  # the duplicate was encoded once


def test_update_card_keeps_the_rest_of_the_card(saved, tmp_path, capsys):
    from grace_st.cli import main as grace_main

    readme = saved / "README.md"
    body_before = readme.read_text().split("---", 2)[2]
    code = grace_main(
        [
            "eval",
            str(saved),
            "--tasks",
            "GraceWordNetSensePairClassification",
            "--output",
            str(tmp_path / "r"),
            "--update-card",
            "--no-cache",
        ]
    )
    assert code == 0
    text = readme.read_text()
    metadata = yaml.safe_load(text.split("---")[1])
    assert text.split("---", 2)[2] == body_before  # the card's text is untouched
    assert "grace" in metadata["tags"] and metadata["library_name"] == "sentence-transformers"
    result = metadata["model-index"][0]["results"][0]
    assert result["dataset"]["name"] == "MTEB GraceWordNetSensePairClassification"
    assert result["metrics"][0]["type"] == "max_ap" and 0 <= result["metrics"][0]["value"] <= 1
    assert "GraceWordNetSensePairClassification" in capsys.readouterr().out


def test_bad_names_and_folders_get_clear_errors(saved, tmp_path, capsys):
    from grace_st.cli import main as grace_main

    assert grace_main(["eval", str(saved), "--tasks", "STSBenchmrk"]) == 2
    assert "Did you mean ['STSBenchmark'" in capsys.readouterr().err
    assert grace_main(["eval", str(saved), "--benchmark", "MTEB(eng, v9)"]) == 2
    assert "Unknown benchmark" in capsys.readouterr().err
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "modules.json").write_text('[{"idx": 0, "name": "0", "path": "", "type": "x.Transformer"}]')
    with pytest.raises(ValueError, match="not a GRACE model folder"):
        load_mteb_model(plain)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert grace_main(["eval", str(tmp_path / "missing"), "--tasks", "GraceWordNetLexnameClustering"]) == 2


def test_released_models_register_with_a_grace_loader(monkeypatch):
    from grace_st import mteb_meta

    monkeypatch.setitem(mteb_meta.KNOWN_MODELS, "grace-st/released-example", {"embed_dim": 576, "license": "mit"})
    mteb_meta.register_grace_models()
    meta = mteb.get_model_meta("grace-st/released-example")
    assert meta.loader is mteb_meta._grace_loader and meta.embed_dim == 576 and meta.use_instructions


def _in_hub_cache(folder, repo_id: str, commit: str = "a" * 40):
    """Put ``folder`` into huggingface_hub's cache as ``repo_id``'s ``main`` (what a download leaves), offline."""
    import shutil

    from huggingface_hub import constants

    repo = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return commit


def test_a_hub_id_gets_its_figures_from_the_downloaded_snapshot(saved, tmp_path):
    commit = _in_hub_cache(saved, "someorg/grace-hub-tiny")
    encoder = load_mteb_model("someorg/grace-hub-tiny", cache=str(tmp_path / "c.sqlite"))
    meta = mteb.get_model_meta("someorg/grace-hub-tiny")
    assert meta.embed_dim == 32 and meta.n_parameters == sum(p.numel() for p in encoder.model[0].model.parameters())
    assert meta.revision == commit and meta.max_tokens == 64 and meta.loader is not None
    assert np.allclose(encoder.encode_texts(["a cat"], prompt=None), encoder.model.encode(["a cat"]), atol=1e-6)
    with pytest.raises(ValueError, match="Cannot load 'someorg/not-downloaded'"):
        load_mteb_model("someorg/not-downloaded")


def test_the_progress_bar_covers_the_corpus_and_counts_cached_texts(grace_tiny, tmp_path, capsys):
    encoder = GraceEncoder(grace_tiny, cache=str(tmp_path / "c.sqlite"))
    texts = ["A cat sat on the mat.", "where is the nearest train station?", "The sea is calm tonight."]
    encoder.encode_texts(texts[:2], prompt=None)
    assert "Encoding" not in capsys.readouterr().err, "off by default"
    encoder.encode_texts(texts, prompt=None, show_progress_bar=True)
    err = capsys.readouterr().err
    assert "3/3" in err and "cached=2" in err
