"""On-disk cache of GRACE encodings, so a text is never given a rationale twice by the same model and settings.

mteb encodes the same texts again and again (a corpus shared by splits and tasks, STS sentences reused across
subsets), and every GRACE encoding costs a generation. Each entry maps a key — the model's fingerprint, the prompt,
the generation/pooling settings and the text — to the rationale and the embedding. The store is one SQLite file:
SQLite's own locking makes it safe for several processes at once (writes are transactions; readers never see half
an entry). A file that SQLite cannot read is moved aside and rebuilt, with a warning.

Size: about ``4 * dim`` bytes for the embedding plus the rationale text (roughly 3-4 KB per text for a 576-dim
model with 64-token rationales; ~15 KB at 2048 tokens and 1536 dims). Location: ``$GRACE_CACHE/encodings.sqlite``
(else ``~/.cache/grace``); delete the file to clear it, or pass ``cache=False`` / ``grace eval --no-cache``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch


def model_fingerprint(model: Any) -> str:
    """A cheap digest of a GRACE model's weights and settings: changes whenever the model's vectors could.

    Hashing every weight of a multi-GB model would cost more than it saves, so each tensor contributes its name,
    shape, dtype, float64 sum and its first and last 256 values: any training step or LoRA merge changes these.
    """
    digest = hashlib.sha256()
    generator = model[0]
    digest.update(json.dumps(generator.get_config_dict(), sort_keys=True, default=str).encode())
    digest.update(json.dumps(getattr(model, "prompts", {}), sort_keys=True).encode())
    with torch.no_grad():
        for name, tensor in generator.model.state_dict().items():
            flat = tensor.detach().reshape(-1)
            digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}{flat.double().sum().item():.10e}".encode())
            sample = torch.cat([flat[:256], flat[-256:]]).float().cpu().numpy()
            digest.update(sample.tobytes())
    return digest.hexdigest()


def entry_key(fingerprint: str, prompt: str | None, text: str) -> str:
    """The key of one encoding: model fingerprint (which covers the settings), prompt and text."""
    return hashlib.sha256(json.dumps([fingerprint, prompt, text]).encode("utf-8")).hexdigest()


def default_cache_path() -> Path:
    from .backbones import grace_cache_dir

    return grace_cache_dir() / "encodings.sqlite"


class EncodingCache:
    """``get``/``put`` of (rationale, embedding) by key, in one SQLite file shared safely between processes."""

    def __init__(self, path: str | os.PathLike | None = None, timeout: float = 120.0) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.timeout = timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._create()
        except sqlite3.DatabaseError as exc:
            self._rebuild(exc)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=self.timeout)

    def _create(self) -> None:
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer of another process
            db.execute(
                "CREATE TABLE IF NOT EXISTS encodings (key TEXT PRIMARY KEY, rationale TEXT, embedding BLOB, dim INT)"
            )
            db.execute("SELECT count(*) FROM encodings").fetchone()

    def _rebuild(self, exc: Exception) -> None:
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        warnings.warn(
            f"The GRACE encoding cache '{self.path}' could not be read ({exc}); it was moved to '{aside}' and a new, "
            "empty cache was started. Texts will be encoded again.",
            UserWarning,
            stacklevel=3,
        )
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                os.replace(source, Path(f"{aside}{suffix}"))
        self._create()

    def get(self, keys: Sequence[str]) -> dict[str, tuple[str, np.ndarray]]:
        """The cached entries among ``keys`` (missing keys are simply absent)."""
        found: dict[str, tuple[str, np.ndarray]] = {}
        try:
            with self._connect() as db:
                for start in range(0, len(keys), 500):
                    chunk = list(keys[start : start + 500])
                    marks = ",".join("?" * len(chunk))
                    query = f"SELECT key, rationale, embedding FROM encodings WHERE key IN ({marks})"
                    for key, rationale, blob in db.execute(query, chunk):
                        found[key] = (rationale, np.frombuffer(blob, dtype=np.float32).copy())
        except sqlite3.DatabaseError as exc:
            self._rebuild(exc)
            return {}
        return found

    def put(self, entries: dict[str, tuple[str, np.ndarray]]) -> None:
        """Store entries in one transaction (an entry already there is kept: same key, same vector)."""
        rows = [
            (key, rationale, np.asarray(vector, dtype=np.float32).tobytes(), int(np.asarray(vector).shape[-1]))
            for key, (rationale, vector) in entries.items()
        ]
        try:
            with self._connect() as db:
                db.executemany("INSERT OR IGNORE INTO encodings VALUES (?, ?, ?, ?)", rows)
        except sqlite3.DatabaseError as exc:
            self._rebuild(exc)

    def __len__(self) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT count(*) FROM encodings").fetchone()[0])
