"""On-disk cache of GRACE encodings, so a text is never given a rationale twice by the same model and settings.

mteb encodes the same texts again and again (a corpus shared by splits and tasks, STS sentences reused across
subsets), and every GRACE encoding costs a generation. Each entry maps a key — the weights' fingerprint, the prompt
actually used, the role, the role's span and budget, every generation/pooling setting, and the text (see
:func:`encoding_keys`) — to the rationale and the embedding. The store is one SQLite file:
SQLite's own locking makes it safe for several processes at once (writes are transactions; readers never see half
an entry). Each entry carries a checksum, so a vector changed on disk is a miss (with a warning), never a wrong
answer. Only a damaged file is moved aside and rebuilt; a busy, full or read-only one is left alone (see
:class:`EncodingCache`).

Size: about ``4 * dim`` bytes for the embedding plus the rationale text (roughly 3-4 KB per text for a 576-dim
model with 64-token rationales; ~15 KB at 2048 tokens and 1536 dims). Location: ``$GRACE_CACHE/encodings.sqlite``
(else ``~/.cache/grace``); delete the file to clear it, or pass ``cache=False`` / ``grace eval --no-cache``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import warnings
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import torch


def weights_fingerprint(backbone: torch.nn.Module) -> str:
    """A cheap digest of a backbone's weights that changes whenever they do, in place or not.

    Hashing every weight of a multi-GB model would cost more than it saves, so each tensor contributes its name,
    shape, dtype, float64 sum and its first and last 256 values: any training step or LoRA merge changes these. It is
    recomputed on every encode call (no copy of a tensor is made), so weights changed in place are never served the
    old model's vectors.
    """
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in backbone.state_dict().items():
            flat = tensor.detach().reshape(-1)
            total = flat.sum(dtype=torch.float64).item() if flat.is_floating_point() else float(flat.sum().item())
            digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}{total:.10e}".encode())
            sample = torch.cat([flat[:256], flat[-256:]]).float().cpu().numpy()
            digest.update(sample.tobytes())
    return digest.hexdigest()


def encoding_keys(model: Any, texts: Sequence[str], prompt: str | None, role: str | None) -> list[str]:
    """The cache key of each text encoded by ``model`` under ``prompt`` in ``role``, computed now.

    A key covers everything that changes a vector: the weights (:func:`weights_fingerprint`), the prompt actually
    used (the module's instruction when ``prompt`` is None), the role (even when both roles' prompts and modes are
    equal), and the role's span, rationale budget, length threshold, layer, input cap and every decoding setting
    (``RationaleGenerator.encoding_settings``). Under a length threshold (``adaptive:N``) each text is keyed by what
    the threshold gives it, so a text it leaves alone shares its key with the same model without the threshold.
    Everything is read at call time, so a setting changed on the same model or encoder afterwards is a miss, never a
    stale vector.
    """
    generator = model[0]
    weights = weights_fingerprint(generator.model)
    used = prompt if prompt else generator.instruction
    if generator.has_length_threshold():  # each text's own span: a threshold resolved to what it gives the text
        per_text = [generator.encoding_settings(role, n) for n in generator.text_token_counts(list(texts))]
    else:
        per_text = [generator.encoding_settings(role)] * len(texts)
    fingerprints: dict[str, str] = {}
    keys = []
    for settings, text in zip(per_text, texts, strict=True):
        described = json.dumps(settings, sort_keys=True, default=str)
        if described not in fingerprints:
            fingerprints[described] = hashlib.sha256(json.dumps([weights, described]).encode()).hexdigest()
        keys.append(entry_key(fingerprints[described], used, text))
    return keys


def entry_key(fingerprint: str, prompt: str | None, text: str) -> str:
    """The key of one encoding: a fingerprint (weights, role, settings; see :func:`encoding_keys`), prompt, text."""
    return hashlib.sha256(json.dumps([fingerprint, prompt, text]).encode("utf-8")).hexdigest()


def default_cache_path() -> Path:
    from .backbones import grace_cache_dir

    return grace_cache_dir() / "encodings.sqlite"


_CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB: the file itself is damaged or not a database


def is_corruption(exc: sqlite3.DatabaseError) -> bool:
    """Whether ``exc`` says the file is damaged, as opposed to busy, full, read-only or failing I/O.

    Only damage justifies moving the file aside; every other error leaves a healthy cache where it is.
    """
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11
    if code is not None:
        return code & 0xFF in _CORRUPT_CODES
    return type(exc) is sqlite3.DatabaseError  # SQLite's CORRUPT and NOTADB map to the base class, others do not


def entry_checksum(key: str, rationale: str, blob: bytes) -> str:
    """Digest of a stored entry, so bytes changed on disk are a miss instead of a wrong vector."""
    return hashlib.sha256(key.encode("utf-8") + b"\0" + rationale.encode("utf-8") + b"\0" + blob).hexdigest()[:32]


class EncodingCache:
    """``get``/``put`` of (rationale, embedding) by key, in one SQLite file shared safely between processes.

    Failures never cost the caller its results: a busy (locked past ``timeout`` seconds), full, read-only or
    failing cache is a miss on reading and a skipped write, each with a warning that names the file and the cause;
    only a damaged file is moved aside (to ``<name>.corrupt``, replacing an earlier one) and rebuilt. The file is
    readable by its owner only: it holds rationales about the user's texts.
    """

    def __init__(self, path: str | os.PathLike | None = None, timeout: float = 120.0) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.timeout = timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._make_private()
        try:
            self._create()
        except sqlite3.DatabaseError as exc:
            self._failed(exc, "could not be opened")

    def _make_private(self) -> None:
        """Create the file owner-only (SQLite gives its -wal and -shm files the database file's mode)."""
        try:
            os.close(os.open(self.path, os.O_CREAT | os.O_RDONLY, 0o600))
            os.chmod(self.path, 0o600)
        except OSError:  # a read-only folder, or someone else's file: SQLite reports what it cannot do
            pass

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=self.timeout)

    def _create(self) -> None:
        with closing(self._connect()) as db, db:
            db.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer of another process
            db.execute(
                "CREATE TABLE IF NOT EXISTS encodings "
                "(key TEXT PRIMARY KEY, rationale TEXT, embedding BLOB, dim INT, checksum TEXT)"
            )
            columns = {row[1] for row in db.execute("PRAGMA table_info(encodings)")}
            if "checksum" not in columns:  # a cache written before checksums: its entries read as misses
                db.execute("ALTER TABLE encodings ADD COLUMN checksum TEXT")
            db.execute("SELECT count(*) FROM encodings").fetchone()

    def _failed(self, exc: sqlite3.DatabaseError, doing: str) -> None:
        """Rebuild a damaged file; for any other error, warn and leave the file alone."""
        if is_corruption(exc):
            self._rebuild(exc)
            return
        warnings.warn(
            f"The GRACE encoding cache '{self.path}' {doing} ({exc}; waited up to {self.timeout:g} s if it was "
            "locked). The file was left as it is; affected texts are encoded again. If it stays busy, full or "
            "read-only, free space or fix its permissions, or point GRACE_CACHE at another folder.",
            UserWarning,
            stacklevel=3,
        )

    def _rebuild(self, exc: Exception) -> None:
        from filelock import FileLock

        aside = self.path.with_name(f"{self.path.name}.corrupt")
        with FileLock(f"{self.path}.lock"):
            try:
                self._create()  # another process may have rebuilt it while this one waited
                return
            except sqlite3.DatabaseError as again:
                if not is_corruption(again):
                    raise
            warnings.warn(
                f"The GRACE encoding cache '{self.path}' is damaged ({exc}); it was moved to '{aside}' (replacing "
                "any earlier one; delete it when not needed) and a new, empty cache was started. Texts will be "
                "encoded again.",
                UserWarning,
                stacklevel=4,
            )
            for suffix in ("", "-wal", "-shm"):
                source = Path(f"{self.path}{suffix}")
                if source.exists():
                    os.replace(source, Path(f"{aside}{suffix}"))
                else:
                    Path(f"{aside}{suffix}").unlink(missing_ok=True)
            self._make_private()
            self._create()

    def get(self, keys: Sequence[str]) -> dict[str, tuple[str, np.ndarray]]:
        """The cached entries among ``keys``; missing keys, and entries whose checksum fails, are absent."""
        found: dict[str, tuple[str, np.ndarray]] = {}
        damaged = 0
        try:
            with closing(self._connect()) as db:
                for start in range(0, len(keys), 500):
                    chunk = list(keys[start : start + 500])
                    marks = ",".join("?" * len(chunk))
                    query = f"SELECT key, rationale, embedding, checksum FROM encodings WHERE key IN ({marks})"
                    for key, rationale, blob, checksum in db.execute(query, chunk):
                        if checksum is None:
                            continue  # written before checksums: encoded again, then replaced
                        if checksum != entry_checksum(key, rationale, blob):
                            damaged += 1
                            continue
                        found[key] = (rationale, np.frombuffer(blob, dtype=np.float32).copy())
        except sqlite3.DatabaseError as exc:
            self._failed(exc, "could not be read")
            return {}
        if damaged:
            warnings.warn(
                f"{damaged} cached encoding(s) in '{self.path}' failed their checksum (changed on disk); they are "
                "encoded again and replaced.",
                UserWarning,
                stacklevel=2,
            )
        return found

    def put(self, entries: dict[str, tuple[str, np.ndarray]]) -> None:
        """Store entries in one transaction, replacing any stored under the same key (same key, same vector)."""
        rows = []
        for key, (rationale, vector) in entries.items():
            blob = np.asarray(vector, dtype=np.float32).tobytes()
            dim = int(np.asarray(vector).shape[-1])
            rows.append((key, rationale, blob, dim, entry_checksum(key, rationale, blob)))
        try:
            with closing(self._connect()) as db, db:
                db.executemany("INSERT OR REPLACE INTO encodings VALUES (?, ?, ?, ?, ?)", rows)
        except sqlite3.DatabaseError as exc:
            self._failed(exc, f"could not store {len(rows)} new encoding(s)")

    def __len__(self) -> int:
        with closing(self._connect()) as db:
            return int(db.execute("SELECT count(*) FROM encodings").fetchone()[0])
