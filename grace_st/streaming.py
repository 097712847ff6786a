"""Encode a text stream of any length with a bounded working set, writing each chunk out as soon as it is done.

``model.encode`` keeps every input and output of a call in memory (with ``output_value=None``, each text's
token-level hidden states too), so one call over a large file grows with the file. Here texts are read lazily and
encoded ``chunk_size`` at a time; what is held at once is one chunk's texts and outputs, whatever the file's size.
Since no vector depends on batch composition, the chunking changes no result.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

from sentence_transformers import SentenceTransformer

from .atomic import atomic_file
from .errors import GraceFileNotFoundError, GraceUserError
from .rationales import GraceEncoding, encode_with_rationales


logger = logging.getLogger(__name__)


DEFAULT_CHUNK_SIZE = 256
"""Texts encoded, then written, at a time: 256 keeps a 135M backbone's chunk outputs near 100 MB."""


def iter_texts(path: Path) -> Iterator[str]:
    """Texts from a .txt (one per line, blank lines skipped) or .jsonl (field 'text') file, read line by line.

    Bad lines are named (file and line number) when they are reached; the number of skipped blank lines of a .txt
    file is reported on stderr at the end.
    """
    if not path.is_file():
        raise GraceFileNotFoundError(f"No such file: '{path}'. Pass an existing .txt or .jsonl file to --file.")
    blank = 0
    with path.open("rb") as handle:  # decoded line by line, so a bad byte is reported with its line
        for number, raw in enumerate(handle, 1):
            line = _decode(path, number, raw).rstrip("\r\n")
            if not line.strip():
                blank += 1
                continue
            yield _jsonl_text(path, number, line) if path.suffix == ".jsonl" else line
    if blank and path.suffix != ".jsonl":
        logger.warning(f"skipped {blank} blank lines in {path}")


def _decode(path: Path, number: int, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GraceUserError(
            f"{path}:{number} is not valid UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1}). Save the "
            "file as UTF-8, e.g. `iconv -f latin1 -t utf-8 in.txt > out.txt`."
        ) from exc


def _jsonl_text(path: Path, number: int, line: str) -> Any:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise GraceUserError(f"{path}:{number} is not valid JSON ({exc.msg}). Fix or remove that line.") from exc
    if not isinstance(record, dict) or "text" not in record:
        raise GraceUserError(f"{path}:{number} has no 'text' field. Each JSON line needs {{\"text\": ...}}.")
    if not isinstance(record["text"], str):
        raise GraceUserError(
            f"{path}:{number} has 'text': {json.dumps(record['text'])}, not a string. Each JSON line needs "
            '{"text": "..."}; fix or remove that line.'
        )
    return record["text"]


def encode_stream(
    model: SentenceTransformer,
    texts: Iterable[str],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    batch_size: int = 16,
    prompt_name: str | None = None,
) -> Iterator[list[GraceEncoding]]:
    """Yield the encodings of ``texts`` chunk by chunk, in input order; only one chunk is in memory at a time."""
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise GraceUserError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
    iterator = iter(texts)
    while chunk := list(islice(iterator, chunk_size)):
        yield encode_with_rationales(model, chunk, prompt_name=prompt_name, batch_size=batch_size)


def write_jsonl_stream(
    chunks: Iterable[list[GraceEncoding]],
    output: Path | None,
    on_chunk: Callable[[list[GraceEncoding]], None] | None = None,
) -> int:
    """Write each chunk's JSON lines as soon as it arrives; returns how many were written.

    To a file, lines go to a temporary sibling (:func:`~grace_st.atomic.atomic_file`) that is flushed after every
    chunk and renamed over ``output`` only when all are written, so ``output`` is never half-written and a failed,
    interrupted or SIGTERM-ed run leaves no partial file behind.
    """
    if output is None:
        return _write_chunks(chunks, sys.stdout, on_chunk)
    with atomic_file(output) as handle:
        return _write_chunks(chunks, handle, on_chunk)


def _write_chunks(
    chunks: Iterable[list[GraceEncoding]], handle: TextIO, on_chunk: Callable[[list[GraceEncoding]], None] | None
) -> int:
    count = 0
    for chunk in chunks:
        for item in chunk:
            handle.write(json.dumps(item.to_json(), ensure_ascii=False) + "\n")
        handle.flush()
        count += len(chunk)
        if on_chunk is not None:
            on_chunk(chunk)
    return count
