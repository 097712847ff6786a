"""Nothing runs without consent: loading a GRACE folder through this library executes none of its files.

A folder's ``.py`` files are a copy of the module for users without the library; with it installed they are never
imported. Each test tampers with those files so that importing any of them writes a marker file, then checks the
marker is absent (and, where it matters, that the vectors equal those of the untampered folder).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TEXTS

from grace_st import GraceEncoder, load_grace_model, save_grace_model
from grace_st.cli import main as grace_main
from grace_st.errors import GraceUserError


def _tamper(folder: Path, marker: Path) -> None:
    """Make every Python file in ``folder`` write ``marker`` when it is imported."""
    payload = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('the folder code ran')\n"
    files = sorted(folder.rglob("*.py"))
    assert files, "a GRACE folder carries its module's Python files"
    future = "from __future__ import annotations\n"
    for file in files:
        text = file.read_text(encoding="utf-8")
        text = text.replace(future, future + payload, 1) if future in text else payload + text
        file.write_text(text, encoding="utf-8")


@pytest.fixture
def folders(grace_tiny, tmp_path) -> tuple[Path, Path, Path]:
    """(an untampered GRACE folder, a tampered copy, the marker path the tampered code would write)."""
    clean = save_grace_model(grace_tiny, tmp_path / "clean")
    tampered = tmp_path / "tampered"
    shutil.copytree(clean, tampered)
    marker = tmp_path / "MARKER"
    _tamper(tampered, marker)
    return clean, tampered, marker


def _encode(folder: Path, out: Path, *extra: str) -> list[list[float]]:
    assert grace_main(["encode", str(folder), "--text", *TEXTS[:3], "--output", str(out), *extra]) == 0
    return [json.loads(line)["embedding"] for line in out.read_text().splitlines()]


def test_grace_encode_runs_none_of_a_tampered_folders_files_and_gives_the_same_vectors(folders, tmp_path):
    clean, tampered, marker = folders
    expected = _encode(clean, tmp_path / "clean.jsonl")
    got = _encode(tampered, tmp_path / "tampered.jsonl")
    assert not marker.exists(), "grace encode executed a Python file from the model folder"
    np.testing.assert_array_equal(np.array(got), np.array(expected))


def test_library_loaders_run_none_of_the_folders_files(folders, grace_tiny):
    _, tampered, marker = folders
    model = load_grace_model(tampered, device="cpu")
    assert type(model[0]).__module__ == "grace_st.rationale_generator"
    np.testing.assert_array_equal(model.encode(TEXTS[:2]), grace_tiny.encode(TEXTS[:2]))
    assert model.prompts == grace_tiny.prompts and model.similarity_fn_name == "cosine"
    encoder = GraceEncoder(str(tampered), device="cpu", cache=False)
    assert type(encoder.model[0]).__module__ == "grace_st.rationale_generator"
    from grace_st.cli import build_parser
    from grace_st.cli_eval import _encoder

    args = build_parser().parse_args(["eval", str(tampered), "--tasks", "GraceWordNetLexnameClustering"])
    assert type(_encoder(args, str(tampered)).model[0]).__module__ == "grace_st.rationale_generator"
    assert not marker.exists(), "a library loader executed a Python file from the model folder"


def test_a_foreign_module_type_needs_explicit_trust(folders, tmp_path, capsys):
    """A module class that is neither GRACE's nor sentence-transformers' is the folder's code: refused by default."""
    clean, _, marker = folders
    (clean / "custom_norm.py").write_text(
        "import pathlib\n"
        "from sentence_transformers.base.modules import Normalize\n"
        f"pathlib.Path({str(marker)!r}).write_text('custom code ran')\n"
        "class CustomNormalize(Normalize):\n    pass\n"
    )
    modules = json.loads((clean / "modules.json").read_text())
    modules[-1]["type"] = "custom_norm.CustomNormalize"
    (clean / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(GraceUserError, match="custom_norm.CustomNormalize.*trust_remote_code=True"):
        load_grace_model(clean, device="cpu")
    assert grace_main(["encode", str(clean), "--text", "a cat"]) == 2
    assert "--trust-remote-code" in capsys.readouterr().err
    assert not marker.exists()
    model = load_grace_model(clean, device="cpu", trust_remote_code=True)
    assert type(model[-1]).__name__ == "CustomNormalize" and marker.exists(), "trusted code runs when asked"


def test_module_folders_outside_the_model_are_refused(folders):
    clean, _, _ = folders
    modules = json.loads((clean / "modules.json").read_text())
    modules[1]["path"] = "../elsewhere"
    (clean / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(GraceUserError, match="relative path inside the model"):
        load_grace_model(clean, device="cpu")


def test_plain_sentence_transformers_still_loads_with_trust_remote_code(folders):
    """Users without the library keep the folder's own code path (the copy is imported only on explicit trust)."""
    from sentence_transformers import SentenceTransformer

    clean, _, _ = folders
    model = SentenceTransformer(str(clean), trust_remote_code=True, device="cpu")
    assert type(model[0]).__module__.startswith("transformers_modules.")
    np.testing.assert_array_equal(model.encode(TEXTS[:2]), load_grace_model(clean, device="cpu").encode(TEXTS[:2]))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"token_budget": 10**15}, r"\['token_budget'\] that are not saved GRACE settings; the valid keys are"),
        ({"model_kwargs": {"trust_remote_code": True}}, r"\['model_kwargs'\] that are not saved GRACE settings"),
        ({"max_new_tokens": True}, r"max_new_tokens=True is a bool, but max_new_tokens must be int"),
        ({"layer": 1.0}, r"layer=1.0 is a float, but layer must be int"),
        ({"temperature": "hot"}, r"temperature='hot' is a str, but temperature must be int or float"),
        ({"do_sample": 1}, r"do_sample=1 is a int, but do_sample must be bool"),
        ({"format_version": 99}, r"format_version 99, newer than .* Upgrade grace-st"),
        ({"min_library_version": "99.0"}, r"needs grace-st 99.0 or newer, but .* is installed. Upgrade"),
        ({"min_library_version": "soon"}, r"min_library_version='soon' is not a version number"),
    ],
)
def test_grace_config_is_read_as_saved_settings_only(folders, change, message):
    clean, _, _ = folders
    config = json.loads((clean / "grace_config.json").read_text())
    (clean / "grace_config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(GraceUserError, match=message):
        load_grace_model(clean, device="cpu")


def test_bad_settings_file_ends_in_one_line_on_the_command_line(folders, capsys):
    clean, _, _ = folders
    config = json.loads((clean / "grace_config.json").read_text())
    (clean / "grace_config.json").write_text(json.dumps({**config, "token_budget": 1e15}))
    assert grace_main(["encode", str(clean), "--text", "a cat"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grace: error:") and "token_budget" in err and "max_new_tokens" in err


def test_settings_that_are_saved_round_trip(grace_tiny, tmp_path):
    """Every saved key is accepted with its own type (a float temperature, a null seed, per-role modes)."""
    from grace_st.modeling.settings import SAVED_SETTINGS, read_saved_settings

    grace_tiny[0].role_modes = "query-only"  # role_modes is saved only when set
    saved = grace_tiny[0].get_config_dict()
    assert set(saved) == set(SAVED_SETTINGS)
    recorded = ("format_version", "min_library_version")  # checked when read, not constructor arguments
    assert read_saved_settings(saved, "test") == {k: v for k, v in saved.items() if k not in recorded}


def test_a_backbone_with_custom_code_needs_explicit_trust(folders, tmp_path, capsys):
    """The flag exists for backbones whose architecture lives in their own files (``auto_map``)."""
    clean, _, marker = folders
    (clean / "custom_llama.py").write_text(
        "import pathlib\n"
        "from transformers import LlamaConfig, LlamaForCausalLM\n"
        f"pathlib.Path({str(marker)!r}).write_text('backbone code ran')\n"
        "class CustomConfig(LlamaConfig):\n    model_type = 'grace_custom_llama'\n"
        "class CustomForCausalLM(LlamaForCausalLM):\n    config_class = CustomConfig\n"
    )
    config = json.loads((clean / "config.json").read_text())
    config["model_type"] = "grace_custom_llama"
    config["auto_map"] = {
        "AutoConfig": "custom_llama.CustomConfig",
        "AutoModelForCausalLM": "custom_llama.CustomForCausalLM",
    }
    (clean / "config.json").write_text(json.dumps(config))
    assert grace_main(["encode", str(clean), "--text", "a cat"]) == 2
    err = capsys.readouterr().err
    assert "needs to run code from its own files" in err and "--trust-remote-code" in err
    assert not marker.exists()
    assert grace_main(["encode", str(clean), "--text", "a cat", "--trust-remote-code"]) == 0
    assert marker.exists(), "with the flag, the backbone's code runs"
