"""Rank a corpus against a query by GRACE cosine score, encoding the corpus through the encoding cache.

The query is encoded as a query (``encode_query``) and the corpus texts as documents (``encode_document``), both
through :class:`~grace_st.cached_encoding.CachedRoleEncoder`, so searching the same corpus again writes no
rationale. The corpus is read and scored ``chunk_size`` texts at a time, keeping only the best ``top_k`` so far:
memory does not grow with the corpus.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice

import numpy as np
from sentence_transformers import SentenceTransformer

from .cached_encoding import CachedRoleEncoder
from .errors import GraceUserError
from .rationale_cache import EncodingCache


@dataclass(frozen=True)
class SearchHit:
    """One ranked corpus text.

    Attributes:
        index: its position in the corpus (0-based; blank lines of a .txt file are not counted).
        score: cosine similarity to the query.
        text: the corpus text.
        rationale: what the model wrote about it (empty for the ``input`` span).
    """

    index: int
    score: float
    text: str
    rationale: str


@dataclass
class SearchResult:
    """The query's own rationale, the best hits (best first), the corpus size, and how many texts (the query
    included) were encoded rather than read from the cache."""

    query: str
    query_rationale: str
    hits: list[SearchHit]
    corpus_size: int
    texts_generated: int


def search_corpus(
    model: SentenceTransformer,
    query: str,
    corpus: Iterable[str],
    *,
    top_k: int = 10,
    cache: EncodingCache | None = None,
    chunk_size: int = 256,
    batch_size: int = 16,
) -> SearchResult:
    """The ``top_k`` corpus texts closest to ``query`` (ties keep corpus order).

    Pass ``cache=EncodingCache()`` (the default location, ``$GRACE_CACHE``) to reuse earlier encodings; ``None``
    encodes everything afresh.
    """
    if not isinstance(query, str) or not query.strip():
        raise GraceUserError(f"The query {query!r} is empty. Pass a non-empty text with --query.")
    for name, value in (("top_k", top_k), ("chunk_size", chunk_size), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise GraceUserError(f"{name} must be a positive integer, got {value!r}.")
    encoder = CachedRoleEncoder(model, cache, batch_size=batch_size)
    query_rationale, query_vector = encoder.encode([query], "query")[0]
    best: list[SearchHit] = []
    texts, start = iter(corpus), 0
    while chunk := list(islice(texts, chunk_size)):
        encoded = encoder.encode(chunk, "document")
        scores = np.stack([vector for _, vector in encoded]) @ query_vector
        hits = [
            SearchHit(start + i, float(score), text, rationale)
            for i, (text, (rationale, _), score) in enumerate(zip(chunk, encoded, scores, strict=True))
        ]
        best = heapq.nlargest(top_k, best + hits, key=lambda hit: (hit.score, -hit.index))
        start += len(chunk)
    if start == 0:
        raise GraceUserError("The corpus holds no texts. Pass a file with at least one non-blank line.")
    return SearchResult(query, query_rationale, best, start, encoder.texts_generated)
