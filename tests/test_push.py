"""`grace push` against huggingface_hub's real client code, with only the HTTP transport replaced."""

from __future__ import annotations

import base64
import json
import shutil

import httpx2
import huggingface_hub
import pytest
import yaml

from grace_st import save_grace_model
from grace_st.cli import main as grace_main
from grace_st.push import PushError, push_grace_model


class FakeHub:
    """Answers the Hub API calls of create_repo + create_commit and records what was committed."""

    def __init__(self, fail_commit: bool = False) -> None:
        self.fail_commit = fail_commit
        self.files: dict[str, bytes] = {}
        self.paths: list[str] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        self.paths.append(f"{request.method} {path}")
        if path == "/api/repos/create":
            name = json.loads(request.content)["name"]
            return httpx2.Response(200, json={"url": f"https://huggingface.co/me/{name}", "name": name, "id": "1"})
        if path == "/api/validate-yaml":
            return httpx2.Response(200, json={"warnings": [], "errors": []})
        if "/preupload/" in path:
            files = json.loads(request.content)["files"]
            modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
            return httpx2.Response(200, json={"files": modes})
        if "/commit/" in path:
            if self.fail_commit:
                return httpx2.Response(500, json={"error": "Internal error"}, request=request)
            for line in request.content.decode().splitlines():
                record = json.loads(line)
                if record["key"] == "file":
                    self.files[record["value"]["path"]] = base64.b64decode(record["value"]["content"])
            return httpx2.Response(200, json={"commitUrl": "https://hf.co/me/x/commit/abc", "commitOid": "abc"})
        return httpx2.Response(404, request=request)


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
