"""Query and document encodings with their rationales, served from the encoding cache when the model saw the text.

Every GRACE encoding costs a generation, and ``grace search`` encodes the same corpus on every call. This reads each
text's (rationale, embedding) from :class:`~grace_st.rationale_cache.EncodingCache` under the same key as the mteb
encoder (:class:`~grace_st.mteb_encoder.GraceEncoder`: weights, prompt, role, settings, text), so a text encoded once,
by either, is never generated again. Texts not in the cache are encoded with ``encode_query`` / ``encode_document``
(see :mod:`grace_st.role_encoding`) and stored, so the vectors are exactly what those return.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from sentence_transformers import SentenceTransformer

from .rationale_cache import EncodingCache, encoding_keys
from .role_encoding import Role, decode_rationale, encode_role, role_prompt


Encoded = tuple[str, np.ndarray]
"""One text's (rationale, float32 unit vector), as the cache stores it."""


def encode_through_cache(
    cache: EncodingCache | None,
    keys: Sequence[str],
    texts: Sequence[str],
    encode: Callable[[list[str]], list[Encoded]],
    chunk: int,
    show_progress_bar: bool | None = False,
) -> tuple[list[Encoded], int]:
    """Each text's encoding, in order, and how many were generated: cached keys are read, each missing key encoded
    once with ``encode``, ``chunk`` texts at a time, every chunk put in the cache before the next is encoded (a killed
    run keeps its finished chunks). The one lookup-encode-store loop of the mteb encoder and ``grace search``.

    The progress bar counts distinct texts over the whole call, the cached ones done from the start (and shown as
    ``cached=N``); ``None`` shows it only on a terminal.
    """
    from tqdm.auto import tqdm

    found = cache.get(sorted(set(keys))) if cache is not None else {}
    pending = list({key: text for key, text in zip(keys, texts, strict=True) if key not in found}.items())
    bar_off = None if show_progress_bar is None else not show_progress_bar
    total = len(found) + len(pending)
    with tqdm(total=total, initial=len(found), unit="text", desc="Encoding", disable=bar_off) as bar:
        bar.set_postfix(cached=len(found))
        for start in range(0, len(pending), chunk):
            part = dict(pending[start : start + chunk])
            new = dict(zip(part, encode(list(part.values())), strict=True))
            if cache is not None:
                cache.put(new)
            found.update(new)
            bar.update(len(part))
    return [found[key] for key in keys], len(pending)


class CachedRoleEncoder:
    """``encode(texts, role)`` -> each text's (rationale, embedding), through the cache when one is given.

    Args:
        model: a GRACE model.
        cache: the cache to read and fill; ``None`` encodes everything afresh.
        batch_size: texts per ``encode`` batch for the texts the cache does not have.
    """

    def __init__(self, model: SentenceTransformer, cache: EncodingCache | None, *, batch_size: int = 16) -> None:
        self.model, self.cache, self.batch_size = model, cache, batch_size
        self.texts_generated = 0  # texts encoded for real (not served by the cache); tests and messages read it

    def encode(self, texts: list[str], role: Role) -> list[Encoded]:
        """(rationale, float32 unit vector) for each text, in order; each text missing from the cache encoded once."""
        from .rationales import CHUNK_TEXTS

        def encode(part: list[str]) -> list[Encoded]:
            outputs = encode_role(self.model, part, role, batch_size=self.batch_size, token_states=False)
            return [
                (decode_rationale(self.model, out), out["sentence_embedding"].float().cpu().numpy()) for out in outputs
            ]

        encoded, generated = encode_through_cache(
            self.cache, self._keys(texts, role), texts, encode, max(CHUNK_TEXTS, self.batch_size)
        )
        self.texts_generated += generated
        return encoded

    def _keys(self, texts: list[str], role: Role) -> list[str]:
        """Cache keys as the mteb encoder writes them; without a cache, the texts themselves (to dedupe)."""
        if self.cache is None:
            return list(texts)
        return encoding_keys(self.model, texts, role_prompt(self.model, role), role)
