"""The held-out suite's data: real-text domains split by source item into train / validation / test.

Three domains, each a list of (query, document) items with a *source item* (the unit that must never straddle two
splits) and a *group* (where a hard-ish training negative is drawn from):

- ``wordnet``: example sentence -> its sense's definition (:mod:`grace_st.wordnet`); source item = the word.
- ``manpages``: a man page's NAME description -> its DESCRIPTION (:mod:`grace_st.suite_manpages`); item = the page.
- ``pydoc``: a stdlib docstring's summary -> the rest of it (:mod:`grace_st.suite_pydoc`); item = the module.

A source item's split depends only on ``sha256("<domain>:<item>")``, so it is deterministic, independent of Python's
hash seed and of the other items. Evaluation uses the first ``cap`` rows of validation/test in a fixed hash order
(:data:`EVAL_QUERIES`), the corpus being those queries' documents; training uses every train row. The man-page and
docstring items are built once (under a second each) and cached as JSONL in ``~/.cache/grace/suite/`` (``$GRACE_CACHE``
moves it), named by the data version: the man-pages release or the Python minor version. WordNet is read directly.

``python -m grace_st.suite build`` builds the cache (``make setup`` runs it); everything else builds it lazily.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .atomic import write_text_atomic
from .errors import GraceUserError


FORMAT_VERSION = "v1"
DOMAINS = ("wordnet", "manpages", "pydoc")
SPLITS = ("train", "validation", "test")
EVAL_SPLITS = ("validation", "test")
EVAL_QUERIES = {"validation": 150, "test": 300}
"""Queries per evaluation task (the corpus is their documents): cheap enough on two CPU cores, large enough that a
paired bootstrap interval of a few nDCG points is possible."""
# Fraction of source items in (test, validation); the rest is train. Chosen so each domain has a little more than
# EVAL_QUERIES items in its held-out parts (see the README for the resulting sizes).
FRACTIONS = {"manpages": (0.42, 0.22), "pydoc": (0.2, 0.12)}


def split_of(domain: str, item: str) -> str:
    """``"train"``, ``"validation"`` or ``"test"`` for one source item of a man-page or docstring domain."""
    test, validation = FRACTIONS[domain]
    bucket = _bucket(f"{domain}:{item}")
    return "test" if bucket < test else "validation" if bucket < test + validation else "train"


def _bucket(key: str) -> float:
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2**64


def suite_dir() -> Path:
    from .backbones import grace_cache_dir

    return grace_cache_dir() / "suite"


def _data_version(domain: str) -> str:
    if domain == "manpages":
        from .suite_manpages import source_release

        return f"{FORMAT_VERSION}-man{source_release()}"
    if domain == "pydoc":
        from .suite_pydoc import python_version

        return f"{FORMAT_VERSION}-py{python_version()}"
    raise GraceUserError(f"Unknown cached domain {domain!r}; use 'manpages' or 'pydoc' (WordNet is read directly).")


def cache_path(domain: str) -> Path:
    """``~/.cache/grace/suite/<domain>-<version>.jsonl``: a new man-pages release or Python gets a new file."""
    return suite_dir() / f"{domain}-{_data_version(domain)}.jsonl"


def _items(domain: str) -> list[dict[str, str]]:
    if domain == "manpages":
        from .suite_manpages import iter_pages, source_release

        source = f"Linux man-pages {source_release()}"
        return [{**row, "source": source} for row in iter_pages()]
    from .suite_pydoc import iter_docstrings, python_version

    return [{**row, "source": f"Python {python_version()}"} for row in iter_docstrings()]


def build(domain: str, force: bool = False) -> Path:
    """Write the domain's items to its cache file atomically; returns the path.

    The file holds items, not splits: :func:`split_of` is applied when reading, so changing :data:`FRACTIONS` needs
    no rebuild. Bump :data:`FORMAT_VERSION` when a builder changes what it extracts.
    """
    path = cache_path(domain)
    if path.is_file() and not force:
        return path
    rows = _items(domain)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary sibling and rename it over ``path``: readers never see half a file."""
    write_text_atomic(path, text)


def _cached_rows(domain: str) -> list[dict[str, Any]]:
    path = build(domain)
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _wordnet_rows(split: str) -> list[dict[str, Any]]:
    from .wordnet import wordnet_triples

    return [
        {"item": row["word"].lower(), "group": row["word"].lower(), "split": split, **row}
        for row in wordnet_triples(split)
    ]


def domain_rows(domain: str, split: str) -> list[dict[str, Any]]:
    """Every row of one domain's split, in the domain's fixed order (the train part is not shuffled here)."""
    if domain not in DOMAINS:
        raise GraceUserError(f"Unknown suite domain {domain!r}; use one of {DOMAINS}.")
    if split not in SPLITS:
        raise GraceUserError(f"Unknown suite split {split!r}; use one of {SPLITS}.")
    if domain == "wordnet":
        return _wordnet_rows(split)
    return [{**row, "split": split} for row in _cached_rows(domain) if split_of(domain, row["item"]) == split]


def eval_rows(domain: str, split: str, max_queries: int | None = None) -> list[dict[str, Any]]:
    """The rows an evaluation task uses: validation/test rows in a fixed hash order, cut to ``max_queries``.

    The default cap is :data:`EVAL_QUERIES`; a smaller one (smoke tests) takes a prefix of the same order, so a
    capped run's queries are a subset of the full run's.
    """
    if split not in EVAL_SPLITS:
        raise GraceUserError(
            f"Evaluation split must be one of {EVAL_SPLITS}, got {split!r} (train rows are for training)."
        )
    cap = EVAL_QUERIES[split] if max_queries is None else max_queries
    if not isinstance(cap, int) or cap < 1:
        raise GraceUserError(f"max_queries must be a positive integer or None, got {max_queries!r}.")
    rows = sorted(domain_rows(domain, split), key=lambda row: _bucket(f"order:{row['query']}"))
    return rows[:cap]


def train_triples(domains: tuple[str, ...] | list[str] = DOMAINS, seed: int = 0) -> list[dict[str, str]]:
    """``{"query", "positive", "negative"}`` rows from the *train* parts of ``domains``, interleaved round-robin.

    The negative is another train item's document from the same group (WordNet: another sense of the same word;
    man pages: the same section; docstrings: the same module), or from the whole domain when the group has no other
    item. Each domain is shuffled with ``seed`` and the domains alternate, so the first N rows (``max_train_samples``)
    mix all of them.
    """
    per_domain = [_domain_triples(domain, seed) for domain in domains]
    mixed: list[dict[str, str]] = []
    for position in range(max((len(rows) for rows in per_domain), default=0)):
        mixed += [rows[position] for rows in per_domain if position < len(rows)]
    return mixed


def _domain_triples(domain: str, seed: int) -> list[dict[str, str]]:
    rng = random.Random(f"{seed}:{domain}")
    rows = domain_rows(domain, "train")
    if domain == "wordnet":
        triples = [{"query": r["query"], "positive": r["positive"], "negative": r["negative"]} for r in rows]
    else:
        by_group: dict[str, list[str]] = defaultdict(list)
        for row in rows:
            by_group[row["group"]].append(row["document"])
        everything = [row["document"] for row in rows]
        triples = []
        for row in rows:
            pool = [doc for doc in by_group[row["group"]] if doc != row["document"]]
            pool = pool or [doc for doc in everything if doc != row["document"]]
            if pool:
                triples.append({"query": row["query"], "positive": row["document"], "negative": rng.choice(pool)})
    rng.shuffle(triples)
    return triples


def sizes() -> dict[str, dict[str, int]]:
    """Rows per split of every domain (and evaluation queries used), as the README reports them."""
    table: dict[str, dict[str, int]] = {}
    for domain in DOMAINS:
        counts = {split: len(domain_rows(domain, split)) for split in SPLITS}
        counts |= {f"{split}_queries": min(counts[split], EVAL_QUERIES[split]) for split in EVAL_SPLITS}
        table[domain] = counts
    return table


def main(argv: list[str] | None = None) -> int:
    """``python -m grace_st.suite build [--force]``: build the cached domains and print their sizes."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "build":
        print("usage: python -m grace_st.suite build [--force]", file=sys.stderr)
        return 2
    builders: dict[str, Callable[[], Path]] = {d: (lambda d=d: build(d, force="--force" in argv)) for d in DOMAINS[1:]}
    for domain, builder in builders.items():
        print(f"grace: {domain} -> {builder()}", file=sys.stderr)
    print(json.dumps(sizes(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
