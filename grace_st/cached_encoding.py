"""Query and document encodings with their rationales, served from the encoding cache when the model saw the text.

Every GRACE encoding costs a generation, and ``grace search`` encodes the same corpus on every call. This reads each
text's (rationale, embedding) from :class:`~grace_st.rationale_cache.EncodingCache` under the same key as the mteb
encoder (:class:`~grace_st.mteb_encoder.GraceEncoder`: model fingerprint, prompt, text), so a corpus encoded once,
by either, is never generated again. Texts not in the cache are encoded with ``encode_query`` / ``encode_document``
(see :mod:`grace_st.role_encoding`) and stored, so the vectors are exactly what those return.
"""

from __future__ import annotations

import numpy as np
from sentence_transformers import SentenceTransformer

from .rationale_cache import EncodingCache, entry_key, model_fingerprint
from .role_encoding import Role, decode_rationale, encode_role, role_prompt


class CachedRoleEncoder:
    """``encode(texts, role)`` -> each text's (rationale, embedding), through the cache when one is given.

    Args:
        model: a GRACE model.
        cache: the cache to read and fill; ``None`` encodes everything afresh.
        batch_size: texts per ``encode`` batch for the texts the cache does not have.
    """

    def __init__(self, model: SentenceTransformer, cache: EncodingCache | None, *, batch_size: int = 16) -> None:
        self.model, self.cache, self.batch_size = model, cache, batch_size
        self._fingerprint: str | None = None
        self.texts_generated = 0  # texts encoded for real (not served by the cache); tests and messages read it

    def encode(self, texts: list[str], role: Role) -> list[tuple[str, np.ndarray]]:
        """(rationale, float32 unit vector) for each text, in order; each text missing from the cache encoded once."""
        keys = self._keys(texts, role)
        found = self.cache.get(sorted(set(keys))) if self.cache is not None else {}
        missing = {key: text for key, text in zip(keys, texts, strict=True) if key not in found}
        if missing:
            outputs = encode_role(self.model, list(missing.values()), role, batch_size=self.batch_size)
            new = {
                key: (decode_rationale(self.model, out), out["sentence_embedding"].float().cpu().numpy())
                for key, out in zip(missing, outputs, strict=True)
            }
            self.texts_generated += len(new)
            if self.cache is not None:
                self.cache.put(new)
            found.update(new)
        return [found[key] for key in keys]

    def _keys(self, texts: list[str], role: Role) -> list[str]:
        """Cache keys as the mteb encoder writes them; without a cache, the texts themselves (to dedupe)."""
        if self.cache is None:
            return list(texts)
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.model)
        prompt = role_prompt(self.model, role)
        return [entry_key(self._fingerprint, prompt, text) for text in texts]
