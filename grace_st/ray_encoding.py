"""Encode a corpus beyond one machine with Ray Data: an actor pool of GRACE encoders, Parquet out.

A corpus of millions of documents is days of generation on one GPU. Ray Data already does what spreading it needs
(reading Parquet/JSONL in blocks, an autoscaling pool of stateful actors, one per GPU or CPU slot, retries, writing
Parquet as it goes), so this file only supplies the actor: :class:`GraceBatchEncoder` loads the GRACE model once
per actor and turns a batch of ``text`` into ``text``, ``rationale``, ``embedding`` (a fixed-size float32 list, so
any Parquet reader gets plain vectors). Vectors are those of ``grace encode``: each actor runs
:func:`~grace_st.rationales.encode_with_rationales`, or the vLLM path (:mod:`grace_st.vllm_backend`) on GPUs.

Optional: ``pip install "grace-st[ray]"``. :func:`start_local_ray` starts (or joins) Ray with usage reporting off
and no dashboard, so nothing leaves the machine unless a cluster ``address`` is given.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import GraceUserError


IO_TASK_CPUS = 0.25
"""CPUs a read, column-selection or write task asks of Ray. Ray's default is one, and the actor pool may already
hold every CPU slot (by default it grows to the free slots): a task that waits for a whole CPU then never runs, and
the job hangs with every operator "backpressured". Reading JSON lines or Parquet, dropping columns and writing
Parquet are light, so a quarter is plenty and they always fit beside the actors."""


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise GraceUserError(
            'The Ray path needs Ray Data: pip install "grace-st[ray]" (or "ray[data]>=2.60,<3").'
        ) from exc
    return ray


def start_local_ray(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None) -> Any:
    """Start a local Ray instance (or connect to ``address``) with usage statistics off and no dashboard.

    ``RAY_USAGE_STATS_ENABLED=0`` is set before Ray reads it, whatever the environment said: Ray would otherwise
    report usage to its servers. Returns the ``ray`` module.
    """
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray = _ray()
    if not ray.is_initialized():
        ray.init(
            address=address,
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            include_dashboard=False,
        )
    return ray


class GraceBatchEncoder:
    """A Ray Data actor: one GRACE model, loaded once, encoding each batch of ``text`` it is given.

    Args:
        model: a GRACE folder or Hub id (each actor loads it; the library's loader, no folder code run).
        prompt_name: ``"query"`` / ``"document"`` for the model's stored prompts.
        batch_size: texts per generation batch.
        device: torch device of this actor (default: the GPU Ray gave it, else the CPU).
        max_new_tokens: override the model's rationale length cap.
        use_vllm: generate with vLLM (GPU actors; :mod:`grace_st.vllm_backend`), pool with the same model.
        trust_remote_code: let a backbone with custom code run it.
    """

    def __init__(
        self,
        model: str,
        *,
        prompt_name: str | None = None,
        batch_size: int = 16,
        device: str | None = None,
        max_new_tokens: int | None = None,
        use_vllm: bool = False,
        trust_remote_code: bool = False,
    ) -> None:
        from .loading import load_grace_model

        self.model = load_grace_model(model, device=device, trust_remote_code=trust_remote_code)
        if max_new_tokens is not None:
            self.model[0].max_new_tokens = max_new_tokens
        self.prompt_name, self.batch_size = prompt_name, batch_size
        self.llm = None
        if use_vllm:
            from .vllm_backend import load_vllm

            self.llm = load_vllm(self.model)

    def __call__(self, batch: Any) -> Any:
        """A pyarrow batch with ``text`` -> the same rows with ``rationale`` and ``embedding`` added."""
        import pyarrow as pa

        texts = batch.column("text").to_pylist()
        rationales, vectors = self._encode(texts)
        dim = vectors.shape[1]
        embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim)
        return pa.table({"text": texts, "rationale": rationales, "embedding": embedding})

    def _encode(self, texts: list[str]) -> tuple[list[str], np.ndarray]:
        if self.llm is not None:
            from .vllm_backend import encode_with_vllm

            prompt = (self.model.prompts or {}).get(self.prompt_name) if self.prompt_name else None
            vectors, rationales = encode_with_vllm(self.model, texts, self.llm, prompt=prompt)
            return rationales, np.asarray(vectors, dtype=np.float32)
        from .rationales import encode_with_rationales

        encoded = encode_with_rationales(
            self.model, texts, prompt_name=self.prompt_name, batch_size=self.batch_size, show_progress_bar=False
        )
        return [item.rationale for item in encoded], np.stack([item.embedding for item in encoded])


def read_texts_dataset(paths: Sequence[str | os.PathLike]) -> Any:
    """A Ray Dataset of the ``text`` column of Parquet or JSON-lines files (or folders of them)."""
    ray = _ray()
    paths = [str(path) for path in paths]
    kinds = {_kind(path) for path in paths}
    if len(kinds) != 1:
        raise GraceUserError(f"Pass files of one kind, all Parquet or all JSON lines; got {sorted(kinds)}.")
    kind = kinds.pop()
    if kind == "parquet":
        dataset = ray.data.read_parquet(paths, num_cpus=IO_TASK_CPUS)
    else:
        dataset = ray.data.read_json(paths, lines=True, num_cpus=IO_TASK_CPUS)
    if "text" not in dataset.schema().names:
        raise GraceUserError(f"{paths} have no 'text' column; each row needs a text to encode.")
    return dataset.select_columns(["text"], num_cpus=IO_TASK_CPUS)


def _kind(path: str) -> str:
    suffixes = {p.suffix for p in Path(path).iterdir()} if Path(path).is_dir() else {Path(path).suffix}
    if suffixes <= {".parquet"}:
        return "parquet"
    if suffixes <= {".jsonl", ".json"}:
        return "jsonl"
    raise GraceUserError(f"'{path}' is neither Parquet (.parquet) nor JSON lines (.jsonl); convert it to one of them.")


def encode_dataset(
    dataset: Any,
    model: str | os.PathLike,
    *,
    actors: int | None = None,
    gpus_per_actor: float = 0,
    cpus_per_actor: float = 1,
    texts_per_call: int = 256,
    **encoder_options: Any,
) -> Any:
    """``dataset`` (a ``text`` column) with ``rationale`` and ``embedding`` added, by a pool of GRACE actors.

    Args:
        dataset: a Ray Dataset with a ``text`` column (e.g. from :func:`read_texts_dataset`).
        model: a GRACE folder or Hub id, loaded once per actor.
        actors: pool size; ``None`` grows the pool to the slots free (one actor per ``gpus_per_actor`` /
            ``cpus_per_actor``).
        gpus_per_actor / cpus_per_actor: what each actor holds (one GPU each on a GPU cluster).
        texts_per_call: rows handed to an actor at a time (its memory: one call's texts and outputs).
        encoder_options: :class:`GraceBatchEncoder`'s keyword arguments.

    Rows keep their input order (Ray Data's ``preserve_order``), so the output lines up with the input.
    """
    ray = _ray()
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    pool = ray.data.ActorPoolStrategy(size=actors) if actors else ray.data.ActorPoolStrategy(min_size=1)
    return dataset.map_batches(
        GraceBatchEncoder,
        fn_constructor_args=(str(model),),
        fn_constructor_kwargs=encoder_options,
        batch_size=texts_per_call,
        batch_format="pyarrow",
        compute=pool,
        num_gpus=gpus_per_actor,
        num_cpus=cpus_per_actor,
    )
