"""Encode a text stream of any length with a bounded working set, writing each chunk out as soon as it is done.

``model.encode`` keeps every input and output of a call in memory (with ``output_value=None``, each text's
token-level hidden states too), so one call over a large file grows with the file. Here texts are read lazily and
encoded ``chunk_size`` at a time; what is held at once is one chunk's texts and outputs, whatever the file's size.
Since no vector depends on batch composition, the chunking changes no result. Written to a file, the finished chunks
survive a kill, and the same command continues them (:mod:`grace_st.resumable_output`).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

from sentence_transformers import SentenceTransformer

from .errors import GraceFileNotFoundError, GraceUserError
from .rationales import GraceEncoding, encode_with_rationales
from .resumable_output import ResumableJsonl


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


def count_texts(path: Path) -> int:
    """Non-blank lines of ``path`` (the texts :func:`iter_texts` will yield, if every line is valid): the progress
    bar's total, read in one fast pass before any encoding."""
    with path.open("rb") as handle:
        return sum(1 for raw in handle if raw.strip())


def encode_stream(
    model: SentenceTransformer,
    texts: Iterable[str],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    batch_size: int = 16,
    prompt_name: str | None = None,
    pool: dict[str, Any] | None = None,
) -> Iterator[list[GraceEncoding]]:
    """Yield the encodings of ``texts`` chunk by chunk, in input order; only one chunk is in memory at a time.

    ``pool`` (from ``model.start_multi_process_pool(devices)``) spreads each chunk over several processes.
    """
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise GraceUserError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
    iterator = iter(texts)
    while chunk := list(islice(iterator, chunk_size)):
        yield encode_with_rationales(
            model, chunk, prompt_name=prompt_name, batch_size=batch_size, show_progress_bar=False, pool=pool
        )


def encode_to_jsonl(
    model: SentenceTransformer,
    texts: Iterator[str],
    output: Path | None,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    batch_size: int = 16,
    prompt_name: str | None = None,
    pool: dict[str, Any] | None = None,
    total: int | None = None,
    show_progress_bar: bool | None = None,
    on_chunk: Callable[[list[GraceEncoding]], None] | None = None,
) -> tuple[int, int]:
    """Encode ``texts`` into JSON lines (text, rationale, embedding) on ``output`` or stdout; returns (lines in the
    output, lines kept from an interrupted run).

    To a file, each chunk is durable before the next is encoded, and a rerun of the same command after a kill or a
    failure continues where that run stopped (:class:`~grace_st.resumable_output.ResumableJsonl`): it redoes at
    most one chunk. ``output`` appears only once complete. The progress bar (``total`` texts; ``None`` shows it on a
    terminal only) counts the resumed texts as done.
    """
    from tqdm.auto import tqdm

    stream = partial(
        encode_stream, model, chunk_size=chunk_size, batch_size=batch_size, prompt_name=prompt_name, pool=pool
    )
    bar_options = dict(total=total, unit="text", desc="Encoding", disable=_bar_off(show_progress_bar))
    if output is None:
        with tqdm(**bar_options) as bar:
            return _write_chunks(stream(texts), _stdout_sink, bar, on_chunk), 0
    with ResumableJsonl(output, _manifest(model, prompt_name)) as sink:
        resumed = sink.resume(texts)
        if resumed:
            logger.info(f"continuing the interrupted run in {sink.partial}: {resumed} texts already encoded")
        with tqdm(initial=resumed, **bar_options) as bar:
            bar.set_postfix(resumed=resumed)
            written = _write_chunks(stream(texts), sink.write, bar, on_chunk)
    return resumed + written, resumed


def _bar_off(show_progress_bar: bool | None) -> bool | None:
    """tqdm's ``disable``: None hides the bar unless stderr is a terminal."""
    return None if show_progress_bar is None else not show_progress_bar


def _manifest(model: SentenceTransformer, prompt_name: str | None) -> dict[str, Any]:
    """What must match for a rerun to continue an output: the model (weights, settings, prompts) and the prompt."""
    import hashlib

    from .rationale_cache import weights_fingerprint

    generator = model[0]
    settings = json.dumps([generator.get_config_dict(), model.prompts or {}], sort_keys=True, default=str)
    digest = hashlib.sha256((weights_fingerprint(generator.model) + settings).encode("utf-8")).hexdigest()
    return {"model": digest, "prompt_name": prompt_name}


def _stdout_sink(lines: list[str]) -> None:
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()


def _write_chunks(
    chunks: Iterable[list[GraceEncoding]],
    sink: Callable[[list[str]], None],
    bar: Any,
    on_chunk: Callable[[list[GraceEncoding]], None] | None,
) -> int:
    count = 0
    for chunk in chunks:
        sink([json.dumps(item.to_json(), ensure_ascii=False) for item in chunk])
        count += len(chunk)
        bar.update(len(chunk))
        if on_chunk is not None:
            on_chunk(chunk)
    return count
