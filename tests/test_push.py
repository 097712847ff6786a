"""`grace push` against huggingface_hub's real client code, with only the HTTP transport replaced."""

from __future__ import annotations

import shutil

import httpx2
import huggingface_hub
import pytest
import yaml
from fake_hub import FakeHub

from grace_st import save_grace_model
from grace_st.cli import main as grace_main
from grace_st.errors import GraceUserError
from grace_st.push import PushError, push_grace_model


@pytest.fixture
def fake_hub(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    hubs = []

    def install(**kwargs) -> FakeHub:
        hub = FakeHub(**kwargs)
        hubs.append(hub)
        huggingface_hub.set_client_factory(
            lambda: httpx2.Client(transport=httpx2.MockTransport(hub), follow_redirects=True)
        )
        return hub

    yield install
    huggingface_hub.set_client_factory(huggingface_hub.utils._http.default_client_factory)


@pytest.fixture
def saved_model(grace_tiny, tmp_path):
    folder = save_grace_model(grace_tiny, tmp_path / "grace-model")
    (folder / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (folder / "checkpoints" / "checkpoint-2" / "optimizer.pt").write_bytes(b"large")
    (folder / "train_summary.json").write_text('{"trained_score": 0.5}')
    return folder


def test_push_uploads_the_model_files_and_a_card_with_hub_metadata(fake_hub, saved_model):
    hub = fake_hub()
    url = push_grace_model(saved_model, "me/grace-tiny")
    assert url.endswith("/commit/abc")
    uploaded = set(hub.files)
    for name in (
        "modules.json",
        "grace_config.json",
        "rationale_generator.py",
        "pooling.py",
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "config_sentence_transformers.json",
        "1_Pooling/config.json",
        "README.md",
        "train_summary.json",
    ):
        assert name in uploaded, name
    assert not any(name.startswith("checkpoints/") for name in uploaded)
    card = hub.files["README.md"].decode()
    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["library_name"] == "sentence-transformers"
    assert metadata["pipeline_tag"] == "sentence-similarity"
    assert "grace" in metadata["tags"]
    assert 'SentenceTransformer("me/grace-tiny", trust_remote_code=True)' in card
    assert hub.files["rationale_generator.py"] == (saved_model / "rationale_generator.py").read_bytes()


def test_failed_upload_leaves_the_folder_intact_and_says_how_to_retry(fake_hub, saved_model):
    fake_hub(fail_commit=True)
    before = sorted(p.relative_to(saved_model) for p in saved_model.rglob("*"))
    with pytest.raises(PushError, match="grace push .* me/grace-tiny"):
        push_grace_model(saved_model, "me/grace-tiny")
    assert sorted(p.relative_to(saved_model) for p in saved_model.rglob("*")) == before


def test_cli_push_reports_bad_folders_and_repo_ids(saved_model, tmp_path, capsys):
    assert grace_main(["push", str(tmp_path / "missing"), "me/x"]) == 2
    assert "No such folder" in capsys.readouterr().err
    plain = tmp_path / "plain"
    shutil.copytree(saved_model, plain)
    (plain / "README.md").unlink()
    assert grace_main(["push", str(plain), "me/x"]) == 2
    assert "no README.md" in capsys.readouterr().err
    assert grace_main(["push", str(saved_model), "no-org"]) == 2
    assert "org-or-user/model-name" in capsys.readouterr().err


def test_only_the_files_a_grace_folder_is_made_of_are_uploaded(fake_hub, saved_model, caplog):
    hub = fake_hub()
    (saved_model / "learning_curve.png").write_bytes(b"\x89PNG plot")
    strays = ["notes.txt", "triples.jsonl", "pytorch_model.bin", "1_Pooling/extra.txt", "logs/run.log"]
    for name in strays:
        (saved_model / name).parent.mkdir(exist_ok=True)
        (saved_model / name).write_text("not for the Hub")
    push_grace_model(saved_model, "me/grace-tiny")
    assert "learning_curve.png" in hub.files and "1_Pooling/config.json" in hub.files
    assert not set(strays) & set(hub.files)
    assert "notes.txt" in caplog.text and "stay local" in caplog.text


def test_a_symlink_refuses_the_upload_before_anything_is_sent(fake_hub, saved_model, tmp_path, capsys):
    hub = fake_hub()
    secret = tmp_path / "secret.txt"
    secret.write_text("hf_secret_token")
    (saved_model / "tokenizer.json").unlink()
    (saved_model / "tokenizer.json").symlink_to(secret)
    with pytest.raises(GraceUserError, match="'tokenizer.json' is a symbolic link"):
        push_grace_model(saved_model, "me/grace-tiny")
    assert hub.paths == [], "nothing was sent to the Hub"
    (saved_model / "tokenizer.json").unlink()
    (saved_model / "notes.txt").symlink_to(secret)  # not even a file that would be published
    assert grace_main(["push", str(saved_model), "me/grace-tiny"]) == 2
    assert "'notes.txt' is a symbolic link" in capsys.readouterr().err


def test_a_card_with_a_local_path_is_not_published(fake_hub, saved_model):
    hub = fake_hub()
    card = saved_model / "README.md"
    card.write_text(card.read_text() + f"\nTraining data: {saved_model.parent / 'triples.jsonl'}.\n")
    with pytest.raises(GraceUserError, match="mentions local paths"):
        push_grace_model(saved_model, "me/grace-tiny")
    assert hub.paths == []


def test_training_cards_name_local_data_and_backbones_without_their_path(tmp_path):
    from grace_st.published_files import local_paths_in, public_name
    from grace_st.train.config import GraceConfig
    from grace_st.train.summary import card_training_record

    data = tmp_path / "private" / "triples.jsonl"
    data.parent.mkdir()
    data.write_text("{}")
    assert public_name(str(data)) == "triples.jsonl"
    assert public_name("org/dataset") == "org/dataset" and public_name("grace:wordnet") == "grace:wordnet"
    args = GraceConfig(output_dir=str(tmp_path / "out"), report_to="none")
    curve = {"steps": 0, "per_step": []}
    record = card_training_record(args, str(data), str(tmp_path / "backbone"), None, None, curve, {"wall_seconds": 1})
    assert record["dataset"] == "triples.jsonl" and record["backbone"] == "backbone"
    assert local_paths_in(repr(record), tmp_path) == []
