"""The encoding cache: a damaged file is rebuilt, a busy one is never moved, a changed vector is never returned.

Lock contention is real (a second connection holds SQLite's write lock); bit rot is real bytes changed in the file.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import stat

import numpy as np
import pytest
import torch
from conftest import TEXTS

from grace_st.rationale_cache import EncodingCache


def test_corrupt_cache_is_rebuilt_with_a_warning(tmp_path):
    path = tmp_path / "c.sqlite"
    for _ in range(2):  # a second damaged file replaces the first copy: one aside at most
        path.write_bytes(b"this is not a sqlite database" * 100)
        with pytest.warns(UserWarning, match="is damaged"):
            cache = EncodingCache(path)
    cache.put({"k": ("why", np.ones(3, dtype=np.float32))})
    assert cache.get(["k"])["k"][0] == "why"
    assert sorted(p.name for p in tmp_path.glob("c.sqlite.corrupt*")) == ["c.sqlite.corrupt"]


def test_a_locked_cache_is_waited_for_then_skipped_never_moved(tmp_path):
    """A writer holding the lock past the timeout costs the entries being written, not the cache."""
    path = tmp_path / "c.sqlite"
    cache = EncodingCache(path, timeout=0.2)
    cache.put({"kept": ("r", np.ones(3, dtype=np.float32))})
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process in the middle of a long write
    try:
        with pytest.warns(UserWarning, match=r"could not store 1 new encoding.*locked.*left as it is"):
            cache.put({"new": ("r", np.ones(3, dtype=np.float32))})
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert not list(tmp_path.glob("*corrupt*"))
    assert set(cache.get(["kept", "new"])) == {"kept"}


def test_a_vector_changed_on_disk_is_a_miss_with_a_warning(tmp_path):
    path = tmp_path / "c.sqlite"
    vector = np.full(8, 0.25, dtype=np.float32)
    EncodingCache(path).put({"k": ("why", vector)})
    raw = path.read_bytes()
    assert raw.count(vector.tobytes()) == 1
    path.write_bytes(raw.replace(vector.tobytes(), np.full(8, 0.5, dtype=np.float32).tobytes()))  # bit rot
    cache = EncodingCache(path)
    with pytest.warns(UserWarning, match="1 cached encoding.*failed their checksum"):
        assert cache.get(["k"]) == {}
    cache.put({"k": ("why", vector)})  # encoded again, the bad entry replaced
    assert np.array_equal(cache.get(["k"])["k"][1], vector)


def test_the_cache_file_is_private_whatever_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        EncodingCache(tmp_path / "c.sqlite").put({"k": ("why", np.ones(3, dtype=np.float32))})
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "c.sqlite").stat().st_mode) == 0o600


def _write_entries(path: str, offset: int) -> None:
    cache = EncodingCache(path)
    for i in range(50):
        cache.put({f"{offset}-{i}": ("r", np.full(4, i, dtype=np.float32))})


def test_two_processes_share_the_cache(tmp_path):
    import multiprocessing

    path = str(tmp_path / "shared.sqlite")
    EncodingCache(path)
    workers = [multiprocessing.get_context("spawn").Process(target=_write_entries, args=(path, n)) for n in (1, 2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0]
    assert len(EncodingCache(path)) == 100


def _changes(model):
    """(ingredient, change made on the same model in place): every one must change the cache key."""
    from grace_st.modeling.role_modes import RoleMode, RoleModes  # here: spawned workers import this module

    generator = model[0]

    def weights():
        with torch.no_grad():
            next(generator.model.parameters()).add_(1e-3)  # in place: same objects, new values

    def sampling(**changes):
        return lambda: setattr(generator, "settings", dataclasses.replace(generator.settings, **changes))

    return [
        ("weights", weights),
        ("span", lambda: setattr(generator, "span", "rationale")),
        ("layer", lambda: setattr(generator, "layer", -2)),
        ("max_new_tokens", lambda: setattr(generator, "max_new_tokens", 3)),
        ("max_input_tokens", lambda: setattr(generator, "max_seq_length", 32)),
        ("do_sample", sampling(do_sample=True, seed=1)),
        ("temperature", sampling(temperature=0.5)),
        ("top_p", sampling(top_p=0.9)),
        ("seed", sampling(seed=2)),
        ("instruction", lambda: setattr(generator, "instruction", "Explain it briefly.")),
        ("role_modes", lambda: setattr(generator, "role_modes", "adaptive:6")),
        ("role budget", lambda: setattr(generator, "role_modes", RoleModes(RoleMode(max_new_tokens=2), RoleMode()))),
    ]


def test_every_ingredient_changed_on_the_same_encoder_is_a_miss(build_tiny, tmp_path):
    """One encoder, one cache: unchanged settings hit; each change (weights in place, prompt, role, span, layer,
    every generation setting, per-role modes) misses, so no stale vector is ever served."""
    from grace_st import GraceEncoder

    model = build_tiny(max_new_tokens=4)
    encoder = GraceEncoder(model, cache=str(tmp_path / "c.sqlite"))
    texts = TEXTS[:2]

    def generated(prompt=None, role=None):
        before = encoder.texts_generated
        encoder.encode_texts(texts, prompt, role=role)
        return encoder.texts_generated - before

    assert generated() == 2 and generated() == 0, "unchanged settings are served from the cache"
    assert generated(prompt="Another instruction.") == 2, "the prompt"
    instruction = model[0].instruction
    assert generated(prompt=instruction) == 0, "the prompt actually used: None means the module's instruction"
    assert generated(role="query") == 2 and generated(role="document") == 0, "the role (default: document)"
    assert generated(role="query") == 0
    for name, change in _changes(model):
        change()
        assert generated() == 2, f"changing {name} on the same encoder must be a miss"
        assert generated() == 0, f"unchanged after changing {name}: a hit"


def test_search_keys_follow_the_role_and_its_settings(build_tiny, tmp_path):
    """grace search's encoder (CachedRoleEncoder) keys by role too, and sees settings changed after it was made."""
    from grace_st.cached_encoding import CachedRoleEncoder
    from grace_st.rationale_cache import EncodingCache

    model = build_tiny(max_new_tokens=4)
    encoder = CachedRoleEncoder(model, EncodingCache(tmp_path / "c.sqlite"))
    encoder.encode(TEXTS[:2], "query")
    encoder.encode(TEXTS[:2], "document")
    assert encoder.texts_generated == 4, "equal prompts, different roles: different keys"
    model[0].max_new_tokens = 3
    encoder.encode(TEXTS[:2], "document")
    assert encoder.texts_generated == 6


def test_a_length_threshold_keys_each_text_by_what_it_gives_the_text(build_tiny, tmp_path):
    """Under adaptive:N a text at most N tokens long is encoded as under full, one over N as input-only: the cache
    serves both from those presets' entries (a validation sweep over N generates nothing new)."""
    from grace_st import GraceEncoder

    model = build_tiny(max_new_tokens=4)
    encoder = GraceEncoder(model, cache=str(tmp_path / "c.sqlite"))
    lengths = model[0].text_token_counts(TEXTS)
    threshold = sorted(lengths)[len(lengths) // 2]
    for preset in ("full", "input-only"):
        model[0].role_modes = preset
        encoder.encode_texts(TEXTS, None)
    before = encoder.texts_generated
    model[0].role_modes = f"adaptive:{threshold}"
    served = encoder.encode_texts(TEXTS, None)
    assert encoder.texts_generated == before, "every text was served from the two presets' entries"
    fresh = GraceEncoder(model, cache=False).encode_texts(TEXTS, None)
    np.testing.assert_allclose(served, fresh, atol=1e-5)
