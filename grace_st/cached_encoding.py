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
        if self.cache is None:
            return self._encode(list(dict.fromkeys(texts)), role, texts)
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.model)
        prompt = role_prompt(self.model, role)
        keys = [entry_key(self._fingerprint, prompt, text) for text in texts]
        found = self.cache.get(sorted(set(keys)))
        missing = {key: text for key, text in zip(keys, texts, strict=True) if key not in found}
        if missing:
            encoded = self._encode(list(missing.values()), role)
            new = dict(zip(missing, encoded, strict=True))
            self.cache.put(new)
            found.update(new)
        return [found[key] for key in keys]

    def _encode(self, unique: list[str], role: Role, order: list[str] | None = None) -> list[tuple[str, np.ndarray]]:
        outputs = encode_role(self.model, unique, role, batch_size=self.batch_size)
        self.texts_generated += len(unique)
        results = {
            text: (decode_rationale(self.model, out), out["sentence_embedding"].float().cpu().numpy())
            for text, out in zip(unique, outputs, strict=True)
        }
        return [results[text] for text in (order if order is not None else unique)]
