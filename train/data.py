"""Training data: load with ``datasets``, check the columns GRACE needs, and shape rows for TRL.

Supervised rows need ``query``, ``positive`` and ``negative``; unsupervised rows need ``text``. The rollouts are
generated for the positive (or the text), so that text becomes TRL's ``prompt``. TRL hands its ``rollout_func`` the
prompts only, not the other columns, so the prompt is structured: one user message whose ``content`` is the text and
which carries the example's ``query`` and ``negative`` beside it (:func:`prompt_message`); the rollout function reads
them back with :func:`prompt_fields`. The chat template is never applied to this message: the rollout function
builds the encoder's own prompt from the text. Nothing is silently lost: rows with empty or non-string values, and
rows whose rollout text is longer than ``max_input_tokens`` (the reference filters those out too), are dropped with a
warning that counts them.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, load_dataset

from ..errors import GraceFileNotFoundError, GraceUserError, GraceUserTypeError


BUILTIN_PREFIX = "grace:"
BUILTINS = ("grace:wordnet", "grace:suite", "grace:suite-wordnet", "grace:suite-manpages", "grace:suite-pydoc")
COLUMNS = {"supervised": ("query", "positive", "negative"), "unsupervised": ("text",)}
_FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def load_source(source: str, split: str = "train", config_name: str | None = None) -> Dataset:
    """A ``Dataset`` from a built-in name, a local jsonl/json/csv/parquet file or folder, or a Hub dataset id."""
    if source.startswith(BUILTIN_PREFIX):
        return _load_builtin(source, split)
    path = Path(source).expanduser()
    if path.is_file():
        builder = _FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise GraceUserError(
                f"Cannot read '{source}': unknown file type {path.suffix!r}. Use one of {sorted(_FILE_BUILDERS)}."
            )
        if not _has_content(path):  # datasets would end in a bare StopIteration
            raise GraceUserError(f"Dataset file '{source}' is empty. It needs at least one row of training data.")
        return load_dataset(builder, data_files=str(path), split="train")
    if path.is_dir():
        return _pick_split(load_dataset(str(path), config_name), split, source)
    if source.count("/") != 1 or path.suffix:
        raise GraceFileNotFoundError(
            f"Dataset '{source}' is neither an existing local file or folder nor a Hub id like 'org/name'. Check "
            f"the path, or use a built-in dataset: {BUILTINS}."
        )
    try:
        return load_dataset(source, config_name, split=split)
    except Exception as exc:  # noqa: BLE001 - datasets raises many types for an unreachable or unknown Hub id
        raise GraceFileNotFoundError(
            f"Could not load the Hub dataset '{source}' (split {split!r}): {type(exc).__name__}: {exc}. Check the id "
            "and your network (HF_HUB_OFFLINE=1 forbids downloads), or save it locally and pass the file path."
        ) from exc


def _has_content(path: Path) -> bool:
    """Whether ``path`` holds anything but whitespace; reads only until the first such byte."""
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 16):
            if chunk.strip():
                return True
    return False


def _pick_split(data: DatasetDict | Dataset, split: str, source: str) -> Dataset:
    if isinstance(data, Dataset):
        return data
    if split not in data:
        raise GraceUserError(f"Dataset '{source}' has no split {split!r}; its splits are {sorted(data)}.")
    return data[split]


def _load_builtin(source: str, split: str) -> Dataset:
    if source not in BUILTINS:
        raise GraceUserError(f"Unknown built-in dataset {source!r}; built-ins are {BUILTINS}.")
    if source.startswith("grace:suite"):
        return _load_suite(source)
    from ..wordnet import wordnet_triples

    wordnet_split = "heldout" if split in ("heldout", "test", "validation") else "train"
    rows = wordnet_triples(wordnet_split)
    return Dataset.from_list([{k: row[k] for k in ("query", "positive", "negative")} for row in rows])


def _load_suite(source: str) -> Dataset:
    """The held-out suite's *train* parts as triples (``grace_st.suite.train_triples``), whatever split is asked:
    its validation and test parts are for evaluation only."""
    from ..suite import DOMAINS, train_triples

    domain = source.removeprefix("grace:suite").removeprefix("-")
    return Dataset.from_list(train_triples((domain,) if domain else DOMAINS))


def _usable(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def prepare_dataset(
    dataset: Dataset,
    objective: str,
    tokenizer: Any | None = None,
    max_input_tokens: int | None = None,
    max_rows: int | None = None,
) -> Dataset:
    """Check the columns for ``objective``, drop unusable rows (counted, with a warning) and add TRL's ``prompt``."""
    needed = COLUMNS[objective]
    missing = [name for name in needed if name not in dataset.column_names]
    if missing:
        raise GraceUserError(
            f"The {objective} objective needs columns {list(needed)}, but the dataset lacks {missing} (it has "
            f"{dataset.column_names}). Rename your columns (datasets' `rename_column`) or choose "
            f"objective={'unsupervised' if objective == 'supervised' else 'supervised'!r}."
        )
    if len(dataset) == 0:
        raise GraceUserError("The training dataset is empty. Point dataset_name at a file or Hub id with rows.")
    total = len(dataset)
    dataset = dataset.filter(lambda row: all(_usable(row[name]) for name in needed))
    empty = total - len(dataset)
    main = "positive" if objective == "supervised" else "text"
    too_long = 0
    if tokenizer is not None and max_input_tokens is not None and len(dataset):
        before = len(dataset)
        dataset = dataset.filter(
            lambda batch: [
                len(ids) <= max_input_tokens
                for ids in tokenizer(batch[main], add_special_tokens=False, split_special_tokens=True)["input_ids"]
            ],
            batched=True,
        )
        too_long = before - len(dataset)
    if empty or too_long:
        warnings.warn(
            f"Dropped {empty + too_long} of {total} training rows: {empty} with an empty or non-string value in "
            f"{list(needed)}, {too_long} whose '{main}' is longer than max_input_tokens={max_input_tokens} tokens.",
            UserWarning,
            stacklevel=2,
        )
    if len(dataset) == 0:
        raise GraceUserError(f"No usable training rows are left out of {total}: every row was empty or too long.")
    if max_rows is not None:
        dataset = dataset.select(range(min(max_rows, len(dataset))))
    others = [name for name in needed if name != main]
    dataset = dataset.map(lambda row: {"prompt": prompt_message(row[main], **{name: row[name] for name in others})})
    return dataset.select_columns(["prompt"])


def prompt_message(text: str, **columns: str) -> list[dict[str, str]]:
    """TRL's ``prompt`` for one example: a single user message with the text, carrying the other columns."""
    return [{"role": "user", "content": text, **columns}]


def prompt_fields(prompt: Any) -> dict[str, str]:
    """``{"text", "query", "negative"}`` (those present) of a :func:`prompt_message` prompt, or of a raw text."""
    if isinstance(prompt, str):
        return {"text": prompt}
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], dict) and "content" in prompt[0]:
        message = prompt[0]
        return {"text": message["content"], **{k: message[k] for k in ("query", "negative") if message.get(k)}}
    raise GraceUserTypeError(
        f"A GRACE prompt is a text or one user message made by grace_st.train.prepare_dataset, got {prompt!r}. Do "
        "not apply a chat template yourself: the rollouts use the encoder's own prompt."
    )
