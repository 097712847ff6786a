"""Real text that needs no network: WordNet 3.0 from Debian's ``wordnet-base`` package.

The quickstart trains on it and the offline MTEB tasks evaluate on it, so both must see the *same* deterministic
split: a synset's fate (``train`` or ``heldout``) depends only on a hash of the lemma that its triple is built
around, so all senses of a word land on the same side and a held-out definition is never a training target.

A triple is (``query`` = an example sentence of a sense, ``positive`` = that sense's definition, ``negative`` = the
definition of *another* sense of the same word). The negative is a hard one by construction: same word, other meaning.
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import GraceFileNotFoundError, GraceUserError


DEFAULT_WORDNET_DIR = Path("/usr/share/wordnet")
SPLITS = ("train", "heldout")
HELDOUT_PARTS = ("validation", "test")  # the held-out suite's halves of ``heldout``
POS_FILES = {"n": "data.noun", "v": "data.verb", "a": "data.adj", "r": "data.adv"}
# WordNet's fixed lexicographer file names, indexed by the two-digit number in each data line.
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body noun.cognition "
    "noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive noun.object "
    "noun.person noun.phenomenon noun.plant noun.possession noun.process noun.quantity noun.relation noun.shape "
    "noun.state noun.substance noun.time verb.body verb.change verb.cognition verb.communication verb.competition "
    "verb.consumption verb.contact verb.creation verb.emotion verb.motion verb.perception verb.possession "
    "verb.social verb.stative verb.weather adj.ppl"
).split()
_QUOTED = re.compile(r'"([^"]+)"')


class WordNetNotFoundError(GraceFileNotFoundError):
    """WordNet's data files are missing; the message says how to install them."""


@dataclass(frozen=True)
class Synset:
    """One WordNet sense: its words, definition, example sentences and lexicographer category."""

    synset_id: str  # "<offset>-<pos>", unique across parts of speech
    pos: str
    lemmas: tuple[str, ...]
    definition: str
    examples: tuple[str, ...]
    lexname: str


def wordnet_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding ``data.noun`` & co: ``path``, else ``$GRACE_WORDNET_DIR``, else Debian's location."""
    folder = Path(path or os.environ.get("GRACE_WORDNET_DIR") or DEFAULT_WORDNET_DIR)
    if not (folder / "data.noun").is_file():
        raise WordNetNotFoundError(
            f"WordNet data not found in '{folder}' (no data.noun). Install it with `apt-get install -y wordnet-base` "
            "(Debian/Ubuntu; `make setup` does this), or point GRACE_WORDNET_DIR at a folder with WordNet 3.0's "
            "data.noun, data.verb, data.adj and data.adv."
        )
    return folder


def parse_data_line(line: str, pos: str) -> Synset | None:
    """Parse one line of a WordNet ``data.*`` file; licence header lines (leading spaces) give ``None``."""
    if line.startswith(" ") or "|" not in line:
        return None
    head, gloss = line.split("|", 1)
    fields = head.split()
    offset, lex_number, word_count = fields[0], int(fields[1]), int(fields[3], 16)
    lemmas = tuple(fields[4 + 2 * i].replace("_", " ") for i in range(word_count))
    lemmas = tuple(re.sub(r"\(.*\)$", "", lemma) for lemma in lemmas)  # adjective markers like "(a)"
    gloss = gloss.strip()
    examples = tuple(example.strip() for example in _QUOTED.findall(gloss) if example.strip())
    definition = gloss.split('; "', 1)[0].split(' "', 1)[0].strip().rstrip(";").strip()
    lexname = LEXNAMES[lex_number] if lex_number < len(LEXNAMES) else f"lex{lex_number}"
    return Synset(f"{offset}-{pos}", pos, lemmas, definition, examples, lexname)


def load_synsets(path: str | os.PathLike[str] | None = None, parts_of_speech: Iterable[str] = "nvar") -> list[Synset]:
    """Every synset with a non-empty definition, in file order (deterministic).

    Parsed once per process (about 5 s for the 117k synsets): training and several eval tasks all read it.
    """
    return list(_parse_files(wordnet_dir(path), "".join(parts_of_speech)))


@functools.lru_cache(maxsize=4)
def _parse_files(folder: Path, parts_of_speech: str) -> tuple[Synset, ...]:
    synsets = []
    for pos in parts_of_speech:
        with open(folder / POS_FILES[pos], encoding="utf-8", errors="replace") as handle:
            for line in handle:
                synset = parse_data_line(line, pos)
                if synset is not None and synset.definition:
                    synsets.append(synset)
    return tuple(synsets)


def _bucket(key: str) -> float:
    return int.from_bytes(hashlib.sha256(key.lower().encode("utf-8")).digest()[:8], "big") / 2**64


def split_of(key: str, heldout_fraction: float = 0.1) -> str:
    """``"heldout"`` for a stable ``heldout_fraction`` of keys, else ``"train"``; independent of Python's hash seed."""
    return "heldout" if _bucket(key) < heldout_fraction else "train"


def suite_split_of(key: str, heldout_fraction: float = 0.1) -> str:
    """``"train"``, ``"validation"`` or ``"test"``: the held-out suite's three-way split by the same lemma hash.

    ``heldout`` is exactly ``validation`` (the lower half of its hash range) plus ``test`` (the upper half), so the
    quickstart's train part is the suite's train part.
    """
    bucket = _bucket(key)
    if bucket >= heldout_fraction:
        return "train"
    return "validation" if bucket < heldout_fraction / 2 else "test"


def build_triples(synsets: list[Synset], heldout_fraction: float = 0.1, seed: int = 0) -> dict[str, list[dict]]:
    """(example, its definition, another sense's definition) triples, split by the word they are built around.

    For each synset with example sentences, the word is its first lemma that has another sense of the same part of
    speech; synsets whose words all have a single sense give no triple (there is no hard negative for them). Only the
    first example sentence of a synset is used, so one sense cannot dominate. ``seed`` picks among several other
    senses reproducibly.
    """
    senses: dict[tuple[str, str], list[Synset]] = defaultdict(list)
    for synset in synsets:
        for lemma in synset.lemmas:
            senses[(lemma.lower(), synset.pos)].append(synset)
    rng = random.Random(seed)
    triples: dict[str, list[dict]] = {split: [] for split in SPLITS}
    for synset in synsets:
        if not synset.examples:
            continue
        for lemma in synset.lemmas:
            others = [s for s in senses[(lemma.lower(), synset.pos)] if s.definition != synset.definition]
            if others:
                negative = rng.choice(others)
                triples[split_of(lemma, heldout_fraction)].append(
                    {
                        "query": synset.examples[0],
                        "positive": synset.definition,
                        "negative": negative.definition,
                        "word": lemma,
                        "synset": synset.synset_id,
                        "negative_synset": negative.synset_id,
                    }
                )
                break
    return triples


def wordnet_triples(
    split: str = "train",
    limit: int | None = None,
    heldout_fraction: float = 0.1,
    seed: int = 0,
    path: str | None = None,
) -> list[dict]:
    """The triples of one split, shuffled reproducibly by ``seed`` and cut to ``limit`` rows.

    ``split`` is ``train`` or ``heldout``, or one of the suite's halves of ``heldout``: ``validation``, ``test``.
    """
    if split not in SPLITS + HELDOUT_PARTS:
        raise GraceUserError(f"Unknown WordNet split {split!r}; use one of {SPLITS + HELDOUT_PARTS}.")
    triples = build_triples(load_synsets(path), heldout_fraction, seed)
    if split in HELDOUT_PARTS:
        rows = [row for row in triples["heldout"] if suite_split_of(row["word"], heldout_fraction) == split]
    else:
        rows = triples[split]
    random.Random(seed).shuffle(rows)
    return rows if limit is None else rows[:limit]
