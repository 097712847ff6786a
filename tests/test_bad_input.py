"""Every user mistake gets an error that names the value and the fix (or a documented warning)."""

from __future__ import annotations

import pytest

from grace_st import BackboneNotFoundError, build_grace_model, load_grace_model, resolve_backbone


@pytest.mark.parametrize("bad", ["", "   \n\t"])
def test_empty_or_whitespace_text(grace_tiny, bad):
    with pytest.raises(ValueError, match="empty or whitespace-only text") as info:
        grace_tiny.encode(["fine", bad])
    assert repr(bad) in str(info.value) and "Remove it or replace it" in str(info.value)


@pytest.mark.parametrize("bad", [None, 42, b"bytes"])
def test_non_string_text(grace_tiny, bad):
    with pytest.raises(TypeError, match="GRACE encodes strings") as info:
        grace_tiny.encode(["fine", bad])
    assert repr(bad) in str(info.value) and "str()" in str(info.value)


def test_single_none_is_rejected_too(grace_tiny):
    with pytest.raises(TypeError, match="NoneType"):
        grace_tiny.encode(None)


def test_over_long_text_is_cut_with_a_warning(build_tiny):
    model = build_tiny(max_input_tokens=8)
    with pytest.warns(UserWarning, match=r"1 of 2 texts are longer than max_input_tokens=8"):
        vectors = model.encode(["the cat sat on the mat " * 40, "short"])
    assert vectors.shape[0] == 2


def test_settings_beyond_the_context_are_refused(tiny_backbone):
    with pytest.raises(ValueError, match=r"exceeds the backbone's context of 512 tokens\. Lower max_input_tokens"):
        build_grace_model(str(tiny_backbone), max_input_tokens=500, max_new_tokens=64)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"span": "all"}, "Invalid span: 'all'"),
        ({"layer": "last"}, "layer must be an integer"),
        ({"max_new_tokens": 0}, "max_new_tokens must be a positive integer, got 0"),
        ({"max_input_tokens": -3}, "max_input_tokens must be a positive integer, got -3"),
        ({"do_sample": True, "temperature": 0.0}, "temperature must be > 0"),
        ({"do_sample": True, "temperature": "hot"}, "temperature must be a number, got 'hot'"),
        ({"top_p": "all"}, "top_p must be a number, got 'all'"),
        ({"instruction": "  "}, "instruction must be a non-empty string"),
    ],
)
def test_wrong_settings(tiny_backbone, settings, message):
    with pytest.raises(ValueError, match=message):
        build_grace_model(str(tiny_backbone), **settings)


def test_unknown_hub_id_offline():
    with pytest.raises(BackboneNotFoundError, match="'nobody/no-such-model'.*HF_HUB_OFFLINE"):
        resolve_backbone("nobody/no-such-model")


def test_missing_local_path(tmp_path):
    with pytest.raises(BackboneNotFoundError, match="No such folder"):
        resolve_backbone(str(tmp_path / "nothing-here"))


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(BackboneNotFoundError, match="no config.json"):
        resolve_backbone(str(tmp_path))


def test_load_unknown_grace_model_offline():
    with pytest.raises(BackboneNotFoundError, match="leave MODEL/--backbone out"):
        load_grace_model("nobody/no-such-grace-model")


def test_default_max_input_tokens_fits_the_context(tiny_backbone):
    """Left unset, max_input_tokens shrinks from 1024 to what fits a small context with template and rationale."""
    model = build_grace_model(str(tiny_backbone), max_new_tokens=8)
    generator = model[0]
    template = generator.template(generator.instruction)
    used = len(template.prefix_ids) + generator.max_input_tokens + len(template.suffix_ids) + 8
    assert used == generator.model.config.max_position_embeddings == 512
