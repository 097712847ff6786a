"""One rule each for what a name or object is (grace_st/model_ids.py), and the pad-token rule (modeling/generation)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from grace_st.errors import GraceUserError
from grace_st.model_ids import is_grace_folder, is_grace_model, is_hub_id, is_local_path
from grace_st.modeling.generation import pad_token_id_for


@pytest.mark.parametrize(
    ("name", "hub"),
    [
        ("Qwen/Qwen2.5-1.5B-Instruct", True),
        ("gpt2", True),  # a legacy id without an organisation
        ("./model", False),
        ("/abs/model", False),
        ("~/model", False),
        ("org/name/sub", False),  # a Hub id has at most one slash
        ("grace:wordnet", False),  # a built-in, not a Hub id
        ("", False),
    ],
)
def test_hub_id_or_local_path(name, hub):
    assert is_hub_id(name) is hub


def test_an_existing_folder_is_a_path_even_if_it_looks_like_an_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert is_local_path("org/name") and not is_hub_id("org/name")


def test_grace_folder_and_model(grace_tiny, tmp_path):
    from grace_st import save_grace_model

    folder = save_grace_model(grace_tiny, tmp_path / "m")
    assert is_grace_folder(folder) and is_grace_model(grace_tiny)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "modules.json").write_text(json.dumps([{"type": "sentence_transformers.models.Pooling"}]))
    assert not is_grace_folder(tmp_path / "plain") and not is_grace_folder(tmp_path / "missing")
    assert not is_grace_model([SimpleNamespace()]) and not is_grace_model(object())


def test_pad_token_rule():
    tok = SimpleNamespace(pad_token_id=None, eos_token_id=7)
    assert pad_token_id_for(tok, [3]) == 7
    assert pad_token_id_for(SimpleNamespace(pad_token_id=0, eos_token_id=7)) == 0  # 0 is a real id
    assert pad_token_id_for(SimpleNamespace(pad_token_id=None, eos_token_id=None), [3, 4]) == 3
    with pytest.raises(GraceUserError, match="neither a pad nor an end-of-sequence token"):
        pad_token_id_for(SimpleNamespace(pad_token_id=None, eos_token_id=None))
