"""Per-role modes: saved with the model, chosen by the role sentence-transformers and mteb pass, refused by an older
library, and used by training the way inference uses them."""

from __future__ import annotations

import json

import mteb
import numpy as np
import pytest
from conftest import TEXTS
from mteb.mocks.mock_tasks import MockSTSTask

from grace_st import GraceEncoder, grace_model_meta, load_grace_model, save_grace_model
from grace_st.errors import GraceUserError
from grace_st.eval_tasks import WordNetDefinitionRetrieval
from grace_st.modeling import settings as saved_settings
from grace_st.modeling.role_modes import RoleMode, RoleModes, preset_modes


@pytest.fixture
def input_only(build_tiny):
    """The same tiny model with no rationale at all: what an input-only role must give."""
    return build_tiny(span="input")


def test_unknown_or_incomplete_presets_name_the_valid_ones(grace_tiny):
    with pytest.raises(GraceUserError, match=r"Unknown preset 'fast'; the presets are .*'full', 'query-only'"):
        grace_tiny[0].role_modes = "fast"
    with pytest.raises(GraceUserError, match=r"'adaptive:N' with N a positive number of tokens"):
        preset_modes("adaptive")
    with pytest.raises(GraceUserError, match=r"task='banana' is not a role GRACE knows"):
        grace_tiny.encode(TEXTS[:1], task="banana")
    assert grace_tiny[0].role_modes is None, "a refused value leaves the model as it was"


def test_query_only_gives_queries_a_rationale_and_documents_none(grace_tiny, input_only):
    full_queries, full_documents = grace_tiny.encode_query(TEXTS), grace_tiny.encode_document(TEXTS)
    grace_tiny[0].role_modes = "query-only"
    np.testing.assert_allclose(grace_tiny.encode_query(TEXTS), full_queries, atol=1e-6)
    documents = grace_tiny.encode_document(TEXTS)
    np.testing.assert_allclose(documents, input_only.encode(TEXTS), atol=1e-6)
    assert np.abs(documents - full_documents).max() > 1e-3, "the document side did change"
    outputs = grace_tiny.encode_document(TEXTS[:2], output_value=None)
    assert all(out["rationale_ids"].numel() == 0 for out in outputs), "no document rationale was written"
    np.testing.assert_allclose(grace_tiny.encode(TEXTS), documents, atol=1e-6)  # no role: the default, document
    grace_tiny[0].role_modes = RoleModes(RoleMode(), RoleMode("input"), default_role="query", preset="query-only")
    np.testing.assert_allclose(grace_tiny.encode(TEXTS), full_queries, atol=1e-6)


def test_adaptive_skips_the_rationale_of_long_texts_only(grace_tiny, input_only):
    lengths = grace_tiny[0].preprocess(TEXTS)["text_tokens"].tolist()
    threshold = sorted(lengths)[len(lengths) // 2]
    full = grace_tiny.encode_query(TEXTS)
    grace_tiny[0].role_modes = f"adaptive:{threshold}"
    adaptive = grace_tiny.encode_query(TEXTS)  # one batch holding both kinds of rows
    plain = input_only.encode(TEXTS)
    for i, length in enumerate(lengths):
        expected = plain[i] if length > threshold else full[i]
        np.testing.assert_allclose(adaptive[i], expected, atol=1e-5)
    assert {length > threshold for length in lengths} == {True, False}


def test_role_budget_is_the_rationale_cap_of_that_role(build_tiny):
    model = build_tiny(max_new_tokens=8)
    model[0].role_modes = RoleModes(RoleMode(max_new_tokens=3), RoleMode(), preset="custom")
    queries = model.encode_query(TEXTS[:3], output_value=None)
    documents = model.encode_document(TEXTS[:3], output_value=None)
    assert max(int(out["rationale_mask"].sum()) for out in queries) <= 3
    assert max(int(out["rationale_mask"].sum()) for out in documents) > 3  # the tiny model rarely ends early
    short = build_tiny(max_new_tokens=3)
    np.testing.assert_allclose(
        np.stack([out["sentence_embedding"].numpy() for out in queries]), short.encode_query(TEXTS[:3]), atol=1e-5
    )


def test_role_modes_save_and_reload(grace_tiny, tmp_path):
    plain = save_grace_model(grace_tiny, tmp_path / "plain")
    config = json.loads((plain / "grace_config.json").read_text())
    assert "role_modes" not in config and config["format_version"] == 2, "no modes: the format older libraries read"
    grace_tiny[0].role_modes = "adaptive:12"
    grace_tiny[0].max_new_tokens = 6
    expected = (grace_tiny.encode_query(TEXTS), grace_tiny.encode_document(TEXTS))
    folder = save_grace_model(grace_tiny, tmp_path / "adaptive")
    config = json.loads((folder / "grace_config.json").read_text())
    assert config["format_version"] == 3
    assert config["role_modes"]["preset"] == "adaptive:12" and config["role_modes"]["query"]["input_only_above"] == 12
    reloaded = load_grace_model(folder, device="cpu")
    assert reloaded[0].role_modes == grace_tiny[0].role_modes
    np.testing.assert_allclose(reloaded.encode_query(TEXTS), expected[0], atol=1e-6)
    np.testing.assert_allclose(reloaded.encode_document(TEXTS), expected[1], atol=1e-6)
    assert load_grace_model(plain, device="cpu")[0].role_modes is None


def _edit_config(folder, edit):
    """Change a saved folder's ``grace_config.json`` by hand, as a user editing the file would."""
    path = folder / "grace_config.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))


def test_an_older_library_refuses_the_new_format(grace_tiny, tmp_path, monkeypatch):
    """The library before per-role modes read format 2 and knew no role_modes key: it must refuse, not drop them."""
    grace_tiny[0].role_modes = "query-only"
    folder = save_grace_model(grace_tiny, tmp_path / "modes")
    monkeypatch.setattr(saved_settings, "FORMAT_VERSION", 2)
    monkeypatch.delitem(saved_settings.SAVED_SETTINGS, "role_modes")
    with pytest.raises(GraceUserError, match=r"\['role_modes'\] that are not saved GRACE settings.*upgrade grace-st"):
        load_grace_model(folder, device="cpu")
    _edit_config(folder, lambda config: config.pop("role_modes"))  # a hand-edited file keeps its version: refused
    with pytest.raises(GraceUserError, match=r"format_version 3, newer than the 2 this code reads.*Upgrade grace-st"):
        load_grace_model(folder, device="cpu")


def test_bad_saved_role_modes_are_refused_by_name(grace_tiny, tmp_path):
    grace_tiny[0].role_modes = "full"
    folder = save_grace_model(grace_tiny, tmp_path / "modes")
    _edit_config(folder, lambda config: config["role_modes"]["query"].update(budget=4))
    with pytest.raises(GraceUserError, match=r"role_modes.query has keys \['budget'\] that are not role-mode"):
        load_grace_model(folder, device="cpu")


def test_the_folder_copy_applies_the_modes_without_the_library(grace_tiny, tmp_path):
    import subprocess
    import sys

    from test_remote_code import _CHILD

    grace_tiny[0].role_modes = "query-only"
    folder = save_grace_model(grace_tiny, tmp_path / "modes")
    child = _CHILD.replace("model.encode(texts, output_value=None)", "model.encode_document(texts, output_value=None)")
    result = subprocess.run(
        [sys.executable, "-c", child, str(folder), json.dumps(TEXTS[:3])],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["rationales"] == [[], [], []], "documents are input-only in the folder's own code too"
    np.testing.assert_allclose(payload["vectors"], grace_tiny.encode_document(TEXTS[:3]), atol=1e-5)


def _record_roles(monkeypatch, model):
    seen = []
    original = type(model[0]).preprocess

    def spy(self, inputs, prompt=None, **kwargs):
        features = original(self, inputs, prompt=prompt, **kwargs)
        seen.append((features["role"], list(inputs)))
        return features

    monkeypatch.setattr(type(model[0]), "preprocess", spy)
    return seen


def test_mteb_prompt_types_select_the_role(grace_tiny, monkeypatch):
    encoder = GraceEncoder(grace_tiny, cache=False, role_modes="query-only")
    seen = _record_roles(monkeypatch, grace_tiny)
    task = WordNetDefinitionRetrieval(n_queries=3)
    mteb.evaluate(encoder, [task], cache=None, show_progress_bar=False)
    task.load_data()
    split = task.dataset["default"]["test"]
    by_role: dict[str, set[str]] = {}
    for role, texts in seen:
        by_role.setdefault(role, set()).update(texts)
    assert by_role == {"query": set(split["queries"]["text"]), "document": set(split["corpus"]["text"])}
    seen.clear()
    mteb.evaluate(encoder, [MockSTSTask()], cache=None, show_progress_bar=False)
    assert {role for role, _ in seen} == {"document"}, "no prompt type: the default role"


def test_presets_are_filed_under_different_mteb_revisions(build_tiny, tmp_path):
    revisions = set()
    for preset in (None, "full", "query-only", "adaptive:12"):
        model = build_tiny()
        model[0].role_modes = preset
        revisions.add(GraceEncoder(model, cache=False).mteb_model_meta.revision)
        folder = save_grace_model(model, tmp_path / str(preset).replace(":", "-"))
        revisions.add(grace_model_meta(folder, name="test/grace").revision)
    assert len(revisions) == 8, revisions  # the two without modes keep their own revisions, as before
    assert "local" in revisions and any(r.startswith("local-adaptive-12-") for r in revisions)


def test_grace_eval_refuses_a_misspelt_preset_before_loading(capsys):
    from grace_st.cli import main as grace_main

    assert grace_main(["eval", "--tasks", "GraceSuitePydocRetrieval", "--preset", "query_only"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grace: error: Unknown preset 'query_only'") and "'query-only'" in err


def test_heldout_input_mode_is_input_only_whatever_the_modes(build_tiny):
    """The suite's no-rationale baseline must not be overridden by a model's per-role modes."""
    from grace_st.train.heldout import suite_scores

    model = build_tiny()
    model[0].role_modes = "full"
    scores = suite_scores(model, ("test",), max_queries=2, cache=False)
    plain = suite_scores(build_tiny(span="input"), ("test",), max_queries=2, cache=False)
    for name, result in plain["rationale"]["test"].items():
        assert scores["input"]["test"][name]["score"] == result["score"]
    assert model[0].role_modes == preset_modes("full"), "the modes are restored"


def test_a_role_prompt_name_also_selects_the_role(grace_tiny):
    """``grace encode --prompt-name document`` encodes documents, as encode_document does."""
    from grace_st import encode_with_rationales

    grace_tiny[0].role_modes = "query-only"
    documents = encode_with_rationales(grace_tiny, TEXTS[:2], prompt_name="document")
    queries = encode_with_rationales(grace_tiny, TEXTS[:2], prompt_name="query")
    assert [item.rationale for item in documents] == ["", ""]
    np.testing.assert_allclose([item.embedding for item in queries], grace_tiny.encode_query(TEXTS[:2]), atol=1e-6)
