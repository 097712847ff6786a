"""GRACE as an mteb encoder: sentence-transformers' mteb wrapper, plus instructions control and the encoding cache.

mteb's own ``SentenceTransformerEncoderWrapper`` already does what a GRACE model needs for prompts: it resolves the
prompt for each call (task name, then task type, then ``query``/``document``) from the model's stored prompts and
calls ``encode_query``/``encode_document``; for GRACE that prompt is the system instruction the rationale is written
under. This subclass changes two things:

- ``use_instructions=False`` keeps only the ``query``/``document`` prompts, ignoring per-task instructions;
- ``encode`` goes through :class:`~grace_st.rationale_cache.EncodingCache`, so a text already encoded by the same
  model, prompt and settings is not generated again (mteb re-encodes corpora across splits and tasks). The vectors
  are exactly those of ``SentenceTransformer.encode``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from mteb.models import SentenceTransformerEncoderWrapper
from mteb.models.sentence_transformer_wrapper import _resolve_prompt
from mteb.types import PromptType
from sentence_transformers import SentenceTransformer

from .errors import GraceUserError
from .model_ids import is_grace_model
from .multi_process import check_devices
from .rationale_cache import EncodingCache, encoding_keys


class GraceEncoder(SentenceTransformerEncoderWrapper):
    """mteb encoder for a GRACE model (a saved folder, a Hub id, or an in-memory ``SentenceTransformer``).

    Args:
        model: the GRACE model or where to load it from (with :func:`grace_st.load_grace_model`: the installed module
            class, none of the folder's files executed).
        revision / device: as for ``SentenceTransformer``.
        trust_remote_code: let a backbone with custom code run it (off by default).
        model_prompts: prompts to use instead of the model's own (mteb's format).
        use_instructions: use per-task instructions stored with the model (keys are mteb task names or types);
            False keeps only its ``query``/``document`` prompts.
        cache: True for the default on-disk cache, a path for another one, False for none.
        devices: spread the texts to encode over one process per device (e.g. ``["cuda:0", "cuda:1"]`` or
            ``["cpu", "cpu"]``; sentence-transformers' multi-process pool, started on first use and stopped by
            :meth:`close` or at exit); the main process alone reads and writes the cache. Same vectors.
        role_modes: per-role modes to encode with instead of the model's own (a preset name such as
            ``"query-only"``, see ``RationaleGenerator``); set on the model itself. Results go under a revision
            that names them (:func:`results_revision`), so presets never overwrite each other's.
    """

    def __init__(
        self,
        model: str | os.PathLike | SentenceTransformer,
        revision: str | None = None,
        device: str | None = None,
        model_prompts: dict[str, str] | None = None,
        *,
        use_instructions: bool = True,
        cache: bool | str | os.PathLike = True,
        trust_remote_code: bool = False,
        devices: list[str] | None = None,
        role_modes: Any = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(model, SentenceTransformer):
            from .loading import load_grace_model

            model = load_grace_model(model, revision=revision, device=device, trust_remote_code=trust_remote_code)
        if not is_grace_model(model):
            raise GraceUserError(
                f"{type(model[0]).__name__ if len(model) else 'An empty model'} is not a GRACE model (its first "
                "module is not a RationaleGenerator). Pass a folder written by `grace build` / `grace train`, or "
                "evaluate plain sentence-transformers models with mteb.get_model directly."
            )
        if role_modes is not None:
            model[0].role_modes = role_modes
        if not use_instructions:
            stored = model_prompts or dict(model.prompts or {})
            model_prompts = {
                k: v for k, v in stored.items() if k in (PromptType.query.value, PromptType.document.value)
            }
        super().__init__(model, model_prompts=model_prompts)
        revision = results_revision(self.mteb_model_meta.revision, model[0])
        self.mteb_model_meta = self.mteb_model_meta.model_copy(update={"revision": revision})
        self.use_instructions = use_instructions
        self.cache = None if cache is False else EncodingCache(None if cache is True else cache)
        self.texts_generated = 0  # texts encoded for real (not served by the cache); tests and logs read it
        self.devices = check_devices(devices) if devices is not None else None
        self._pool: dict[str, Any] | None = None

    def encode(
        self,
        inputs: Any,
        *,
        task_metadata: Any,
        hf_split: str,
        hf_subset: str,
        prompt_type: PromptType | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        texts = [text for batch in inputs for text in batch["text"]]
        prompt = _resolve_prompt(self.model_prompts, task_metadata, prompt_type)
        return self.encode_texts(texts, prompt, role=role_for_prompt_type(prompt_type), **kwargs)

    def encode_texts(
        self,
        texts: list[str],
        prompt: str | None,
        batch_size: int = 16,
        show_progress_bar: bool = False,
        *,
        role: str | None = None,
        **_: Any,
    ) -> np.ndarray:
        """``(len(texts), dim)`` embeddings; cached texts are looked up, the rest encoded (each unique text once).

        ``show_progress_bar``: one bar over all of ``texts``, with how many came from the cache. ``role``
        (``"query"``, ``"document"``, or None for the model's default role) selects the role mode, as
        ``encode_query`` / ``encode_document`` do.
        """
        from .cached_encoding import encode_through_cache
        from .rationales import CHUNK_TEXTS, encode_with_rationales

        def encode(part: list[str]) -> list[tuple[str, np.ndarray]]:
            kwargs = dict(
                prompt=prompt, batch_size=batch_size, show_progress_bar=False, pool=self._started_pool(), task=role
            )
            return [(item.rationale, item.embedding) for item in encode_with_rationales(self.model, part, **kwargs)]

        keys = encoding_keys(self.model, texts, prompt, role) if self.cache is not None else list(texts)
        chunk = max(CHUNK_TEXTS, batch_size)
        encoded, generated = encode_through_cache(self.cache, keys, texts, encode, chunk, show_progress_bar)
        self.texts_generated += generated
        return np.stack([np.asarray(vector, dtype=np.float32) for _, vector in encoded])

    def _started_pool(self) -> dict[str, Any] | None:
        """The worker pool over :attr:`devices`, started when first needed (a fully cached run starts none)."""
        if self.devices is None or self._pool is not None:
            return self._pool
        import weakref

        from .multi_process import start_pool

        self._pool = start_pool(self.model, self.devices)
        self._stop = weakref.finalize(self, type(self.model).stop_multi_process_pool, self._pool)
        return self._pool

    def close(self) -> None:
        """Stop the worker processes of :attr:`devices`, if started (they also stop when the encoder is freed)."""
        if self._pool is not None:
            self._stop()
            self._pool = None


def results_revision(revision: str | None, generator: Any) -> str | None:
    """``revision`` with the model's per-role modes appended, so mteb keeps each preset's results apart.

    mteb files results under the model's name and revision; two presets of one model would otherwise overwrite each
    other. A model without per-role modes keeps its revision unchanged (as before they existed). The suffix is the
    preset's name and a digest of both roles' encoding settings (so two budgets of one preset differ too).
    """
    return revision_with_modes(revision, generator.get_config_dict())


def revision_with_modes(revision: str | None, settings: dict[str, Any]) -> str | None:
    """:func:`results_revision` from saved settings (``grace_config.json``'s object, or ``get_config_dict()``)."""
    modes = settings.get("role_modes")
    if modes is None:
        return revision
    import hashlib
    import json

    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    label = (modes.get("preset") or "custom").replace(":", "-")
    return f"{revision or 'no_revision_available'}-{label}-{digest}"


def role_for_prompt_type(prompt_type: PromptType | None) -> str | None:
    """The GRACE role of an mteb prompt type: queries and documents by name; ``None`` (tasks with no prompt type:
    STS, clustering, classification) stays None, which the module reads as its default role."""
    if prompt_type is None:
        return None
    return "query" if PromptType(prompt_type) == PromptType.query else "document"
