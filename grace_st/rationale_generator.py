"""The GRACE input module: prompt, generate a rationale, return token embeddings over the pooled span.

It is the first module of a GRACE sentence-transformers model, followed by sentence-transformers' own
``Pooling(pooling_mode="mean")`` and ``Normalize``. ``forward`` hands ``Pooling`` the hidden states of
``[prompt | rationale]`` as ``token_embeddings`` and the pooled-span mask as ``attention_mask``, so the stock mean
pooling computes the GRACE vector.

This file is copied into every saved GRACE model folder together with the ``modeling`` files it imports, and
``modules.json`` points at that copy (``rationale_generator.RationaleGenerator``). With
``trust_remote_code=True`` a saved model therefore loads in an environment that has sentence-transformers but not
this library. The imports below try the flat copy first and fall back to the installed package.

The copies use public APIs of torch, transformers and sentence-transformers only (``tests/test_remote_code.py``
checks their imports against an allow-list), so a folder published today keeps loading on later releases. How the
rationale is generated depends on what is installed, not on the folder: with ``grace_st`` at
:data:`MIN_LIBRARY_VERSION` or newer, the library's single pass (one generation gives rationale and hidden states,
with the CPU kernels; it reaches into transformers internals, which the installed library's version bounds cover);
without it, ``generate`` and one forward (``modeling/two_pass.py``; same rationales and vectors, slower); the choice
is ``modeling/generation_path.py``'s.
"""

from __future__ import annotations

import dataclasses
import difflib
import warnings
from collections.abc import Callable
from typing import Any

import torch
from sentence_transformers.base.modules import InputModule
from transformers import AutoModelForCausalLM, AutoTokenizer


try:  # a copy saved next to a model: the modeling files sit beside this one
    from .batching import DEFAULT_TOKEN_BUDGET, generate_packed
    from .encode_io import check_texts, keep_pooled_outputs
    from .generation import GenerationSettings, end_token_ids, pad_token_id_for
    from .generation_path import generate_fn, linear_weights, refill_fn, two_pass_generation  # noqa: F401
    from .pooling import select_hidden_states
    from .prompts import DEFAULT_INSTRUCTION, PromptTemplate, build_prompt_batch, template_for, tokenize_texts
    from .role_modes import DEFAULT_ROLE, RoleMode, RoleModes, as_role_modes, role_of
    from .settings import BASE_FORMAT_VERSION, FORMAT_VERSION, MIN_LIBRARY_VERSION, read_saved_settings
    from .spans import check_span, pooled_span_masks, rationale_mask
    from .two_pass import GeneratedBatch
except ImportError:  # the installed library
    from grace_st.modeling.batching import DEFAULT_TOKEN_BUDGET, generate_packed
    from grace_st.modeling.encode_io import check_texts, keep_pooled_outputs
    from grace_st.modeling.generation import GenerationSettings, end_token_ids, pad_token_id_for
    from grace_st.modeling.generation_path import (  # noqa: F401  (importable from here too)
        generate_fn,
        linear_weights,
        refill_fn,
        two_pass_generation,
    )
    from grace_st.modeling.pooling import select_hidden_states
    from grace_st.modeling.prompts import (
        DEFAULT_INSTRUCTION,
        PromptTemplate,
        build_prompt_batch,
        template_for,
        tokenize_texts,
    )
    from grace_st.modeling.role_modes import DEFAULT_ROLE, RoleMode, RoleModes, as_role_modes, role_of
    from grace_st.modeling.settings import (
        BASE_FORMAT_VERSION,
        FORMAT_VERSION,
        MIN_LIBRARY_VERSION,
        read_saved_settings,
    )
    from grace_st.modeling.spans import check_span, pooled_span_masks, rationale_mask
    from grace_st.modeling.two_pass import GeneratedBatch

try:
    from grace_st.errors import GraceUserError, GraceUserTypeError
except ImportError:  # a folder's own copy, loaded without the library
    GraceUserError, GraceUserTypeError = ValueError, TypeError  # type: ignore[misc,assignment]


_RUN_TIME_OPTIONS = ("model_kwargs", "processor_kwargs", "token_budget", "int8")


def _refuse_unknown_settings(kwargs: dict[str, Any]) -> None:
    """A misspelt setting (``max_new_token=8``) is an error naming the close valid names, never silently dropped."""
    if not kwargs:
        return
    valid = [*RationaleGenerator.config_keys, *_RUN_TIME_OPTIONS]
    hints = []
    for name in sorted(kwargs):
        close = difflib.get_close_matches(name, valid, n=2)
        hints.append(f"{name!r}" + (f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""))
    raise GraceUserTypeError(
        f"RationaleGenerator got unknown settings {', '.join(hints)}. Valid settings: {sorted(set(valid))}."
    )


class RationaleGenerator(InputModule):
    """Writes a rationale for each text with a causal LM and exposes the hidden states to pool.

    Args:
        model_name_or_path: a Hugging Face causal LM (hub id or local folder).
        instruction: system prompt used when ``encode`` passes no prompt (the reference's prompt by default).
        span: which tokens are pooled: ``"input_and_rationale"`` (default: text, template glue and rationale up to
            and including its first end token), ``"rationale"``, or ``"input"`` (no generation).
        layer: hidden-state layer to pool (``-1``: last layer, after the final norm).
        max_new_tokens: cap on rationale length.
        max_input_tokens: texts are cut to this many tokens before templating, with a warning. ``None``: 1024 (the
            reference's limit), lowered to what fits the backbone's context with the template and the rationale.
        do_sample, temperature, top_p, seed: decoding; greedy (``do_sample=False``) by default for determinism.
        role_modes: per-role span and rationale budget (see ``modeling/role_modes.py``): a preset name
            (``"full"``, ``"query-only"``, ``"input-only"``, ``"adaptive:N"``), a ``RoleModes``, or ``None`` (every
            role uses ``span`` and ``max_new_tokens``, as models saved before per-role modes do). The role comes from
            ``encode_query`` / ``encode_document`` (``task=``); texts encoded without one take the modes'
            ``default_role`` (``"document"`` unless set).
        model_kwargs, processor_kwargs: passed to ``from_pretrained`` of the model and tokenizer.
        token_budget: a batch is cut into length-sorted groups of at most this many KV-cache slots (rows x
            (prompt + max_new_tokens)) before generation; bounds memory. Same vectors; not saved with the model.
        int8: run the backbone's linear layers on int8 weights (CPU, fp32 backbone, ``grace_st`` installed; see
            ``modeling/int8_linears.py``): faster, with a small measured quality loss; off by default, not saved.
    """

    config_file_name = "grace_config.json"  # config.json is the backbone's, saved in the same root folder
    config_keys = [
        "instruction",
        "span",
        "layer",
        "max_new_tokens",
        "max_input_tokens",
        "do_sample",
        "temperature",
        "top_p",
        "seed",
        "role_modes",
        "format_version",
        "min_library_version",
    ]
    save_in_root = True
    # encode(..., token_states=False): see keep_pooled_outputs; encode(..., decode_rows=64): see _generate_rows
    forward_kwargs = {"token_states", "decode_rows"}

    def __init__(
        self,
        model_name_or_path: str,
        instruction: str = DEFAULT_INSTRUCTION,
        span: str = "input_and_rationale",
        layer: int = -1,
        max_new_tokens: int = 256,
        max_input_tokens: int | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        role_modes: Any = None,
        model_kwargs: dict[str, Any] | None = None,
        processor_kwargs: dict[str, Any] | None = None,
        token_budget: int = DEFAULT_TOKEN_BUDGET,
        int8: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        _refuse_unknown_settings(kwargs)
        self.int8 = int8
        if not isinstance(token_budget, int) or isinstance(token_budget, bool) or token_budget < 1:
            raise GraceUserError(f"token_budget must be a positive integer (KV-cache slots), got {token_budget!r}.")
        self.token_budget = token_budget
        check_span(span)
        if not isinstance(layer, int) or isinstance(layer, bool):
            raise GraceUserError(f"layer must be an integer index into the hidden states, got {layer!r}.")
        if max_input_tokens is not None and (not isinstance(max_input_tokens, int) or max_input_tokens < 1):
            raise GraceUserError(f"max_input_tokens must be a positive integer, got {max_input_tokens!r}.")
        if not isinstance(instruction, str) or not instruction.strip():
            raise GraceUserError(f"instruction must be a non-empty string, got {instruction!r}.")
        self.settings = GenerationSettings(max_new_tokens, do_sample, temperature, top_p, seed)
        self.instruction, self.span, self.layer, self.max_input_tokens = instruction, span, layer, max_input_tokens
        self.min_library_version = MIN_LIBRARY_VERSION
        self._role_modes = as_role_modes(role_modes, span)
        model_kwargs = {"dtype": torch.float32, **(model_kwargs or {})}
        self.model = AutoModelForCausalLM.from_pretrained(model_name_or_path, **model_kwargs)
        self.tokenizer = AutoTokenizer.from_pretrained(model_name_or_path, **(processor_kwargs or {}))
        self.end_ids = end_token_ids(self.model, self.tokenizer)
        self.pad_token_id = pad_token_id_for(self.tokenizer, self.end_ids)
        default_template = template_for(self.tokenizer, instruction)
        self._templates: dict[str, PromptTemplate] = {instruction: default_template}
        if max_input_tokens is None:  # the reference's 1024, or what the context leaves for the text
            room = self._room_for_text(default_template)
            self.max_input_tokens = 1024 if room is None else max(1, min(1024, room))
        self._check_context(default_template)

    # -- settings exposed as config keys ---------------------------------------------------------------------------
    do_sample = property(lambda self: self.settings.do_sample)
    temperature = property(lambda self: self.settings.temperature)
    top_p = property(lambda self: self.settings.top_p)
    seed = property(lambda self: self.settings.seed)

    @property
    def span(self) -> str:
        """Which tokens are pooled; settable (``"input"``: the no-rationale baseline), validated like the others."""
        return self._span

    @span.setter
    def span(self, value: str) -> None:
        check_span(value)
        previous, self._span = getattr(self, "_span", None), value
        if "_templates" in vars(self):  # after __init__: the rationale's room in the context depends on the span
            self._recheck_context(lambda: setattr(self, "_span", previous))

    @property
    def role_modes(self) -> RoleModes | None:
        """Per-role span and budget (``None``: every role as the module-wide settings); settable like ``span``.

        Accepts a preset name, a ``RoleModes`` or a saved ``role_modes`` object; checked against the context.
        """
        return self._role_modes

    @role_modes.setter
    def role_modes(self, value: Any) -> None:
        previous, self._role_modes = self._role_modes, as_role_modes(value, self.span)
        self._recheck_context(lambda: setattr(self, "_role_modes", previous))

    @property
    def format_version(self) -> int:
        """The ``grace_config.json`` format this module's settings need (the lowest that holds them)."""
        return FORMAT_VERSION if self._role_modes is not None else BASE_FORMAT_VERSION

    @property
    def default_role(self) -> str:
        """The role of texts encoded without one."""
        return self._role_modes.default_role if self._role_modes is not None else DEFAULT_ROLE

    def mode_for(self, role: str) -> RoleMode:
        """The span, budget and length threshold texts of ``role`` are embedded with."""
        if self._role_modes is None:
            return RoleMode(self.span, self.max_new_tokens)
        mode = self._role_modes.for_role(role)
        if mode.max_new_tokens is None:  # the module's budget, which may change after the modes were set
            mode = dataclasses.replace(mode, max_new_tokens=self.max_new_tokens)
        return mode

    def encoding_settings(self, role: str | None, text_tokens: int | None = None) -> dict[str, Any]:
        """Everything besides weights, prompt and text that changes a ``role`` vector (the encoding cache's key).

        With ``text_tokens`` (the text's length, :meth:`text_token_counts`), the settings that apply to that text:
        a length threshold resolved to the span it gives, so a text a threshold leaves alone has the key it has
        without the threshold (the same vector), and one it makes input-only has the input-only key.
        """
        role = role_of(role, self.default_role)
        mode = self.mode_for(role)
        settings = {"role": role, **mode.to_config()}
        if text_tokens is not None:
            settings.update(span=mode.span_for(text_tokens), input_only_above=None)
        return {
            **settings,
            "layer": self.layer,
            "max_input_tokens": self.max_input_tokens,
            **dataclasses.asdict(self.settings),
            "max_new_tokens": mode.max_new_tokens if settings["span"] != "input" else 0,
        }

    def text_token_counts(self, texts: list[str]) -> list[int]:
        """Each text's length in tokens as :meth:`preprocess` counts it (after the ``max_input_tokens`` cut)."""
        return [len(ids) for ids in tokenize_texts(self.tokenizer, list(texts), self.max_input_tokens)[0]]

    def has_length_threshold(self) -> bool:
        """Whether some role's span depends on the text's length (an ``adaptive:N`` mode)."""
        modes = self._role_modes
        return modes is not None and any(m.input_only_above is not None for m in (modes.query, modes.document))

    def get_config_dict(self) -> dict[str, Any]:
        """The saved settings; ``role_modes`` only when set, so a folder without them stays format 2."""
        config = super().get_config_dict()
        if self._role_modes is None:
            config.pop("role_modes", None)
        else:
            config["role_modes"] = self._role_modes.to_config()
        return config

    @property
    def max_new_tokens(self) -> int:
        """Cap on rationale length; settable, e.g. to trade quality for speed at encode time."""
        return self.settings.max_new_tokens

    @max_new_tokens.setter
    def max_new_tokens(self, value: int) -> None:
        previous = self.settings
        self.settings = dataclasses.replace(previous, max_new_tokens=value)  # validates the value
        self._recheck_context(lambda: setattr(self, "settings", previous))

    @property
    def max_seq_length(self) -> int:
        """Longest text, in tokens, that is embedded without truncation (sentence-transformers' name for it)."""
        return self.max_input_tokens

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        if not isinstance(value, int) or value < 1:
            raise GraceUserError(f"max_seq_length must be a positive integer, got {value!r}.")
        previous, self.max_input_tokens = self.max_input_tokens, value
        self._recheck_context(lambda: setattr(self, "max_input_tokens", previous))

    def _recheck_context(self, undo: Callable[[], None]) -> None:
        """After a setting changed: check every prompt template still fits the context, else undo and raise."""
        try:
            for template in self._templates.values():
                self._check_context(template)
        except ValueError:
            undo()
            raise

    def get_embedding_dimension(self) -> int:
        return int(self.model.config.hidden_size)

    def template(self, instruction: str) -> PromptTemplate:
        """Prompt template for ``instruction``, built once per instruction."""
        if instruction not in self._templates:
            self._templates[instruction] = template_for(self.tokenizer, instruction)
            self._check_context(self._templates[instruction])
        return self._templates[instruction]

    def _room_for_text(self, template: PromptTemplate) -> int | None:
        """Tokens the context leaves for the text around ``template`` and the rationale (None: unbounded)."""
        context = getattr(self.model.config, "max_position_embeddings", None)
        if context is None:
            return None
        return context - len(template.prefix_ids) - len(template.suffix_ids) - self._longest_rationale()

    def _longest_rationale(self) -> int:
        """The largest rationale budget of any role that generates (0 when none does)."""
        roles = ("query", "document") if getattr(self, "_role_modes", None) is not None else ("query",)
        modes = [self.mode_for(role) for role in roles]
        return max((mode.max_new_tokens for mode in modes if mode.generates()), default=0)

    def _check_context(self, template: PromptTemplate) -> None:
        room = self._room_for_text(template)
        if room is not None and self.max_input_tokens > room:
            context = self.model.config.max_position_embeddings
            needed, longest = context - room + self.max_input_tokens, self._longest_rationale()
            raise GraceUserError(
                f"max_input_tokens ({self.max_input_tokens}) + prompt template ({len(template.prefix_ids)} + "
                f"{len(template.suffix_ids)}) + max_new_tokens ({longest}) = {needed} tokens exceeds the "
                f"backbone's context of {context} tokens. Lower max_input_tokens or max_new_tokens."
            )

    # -- sentence-transformers contract ----------------------------------------------------------------------------
    def on_model_ready(self, model: torch.nn.Module) -> None:
        """Give the owning model the ``token_states=False`` option (:func:`keep_pooled_outputs`), once."""
        if not getattr(model, "_grace_pooled_outputs_hook", False):
            model.register_forward_hook(keep_pooled_outputs, with_kwargs=True)
            model._grace_pooled_outputs_hook = True

    def preprocess(
        self, inputs: list[Any], prompt: str | None = None, task: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Tokenise ``inputs`` into left-padded prompts; ``prompt`` (from ``encode``) replaces the instruction.

        ``task`` (``"query"`` / ``"document"``, passed by ``encode_query`` / ``encode_document``) picks the role
        mode ``forward`` embeds with; it is recorded in the features as ``role``, with each text's token count.
        """
        check_texts(inputs)
        role = role_of(task, self.default_role)
        template = self.template(prompt or self.instruction)
        batch = build_prompt_batch(self.tokenizer, template, inputs, self.max_input_tokens, self.pad_token_id)
        if batch.num_truncated:
            warnings.warn(
                f"{batch.num_truncated} of {len(inputs)} texts are longer than max_input_tokens="
                f"{self.max_input_tokens} and were cut to their first {self.max_input_tokens} tokens. Raise "
                "max_input_tokens (within the backbone's context) to embed more of them.",
                UserWarning,
                stacklevel=2,
            )
        return {
            "input_ids": batch.input_ids,
            "attention_mask": batch.attention_mask,
            "prompt_span_mask": batch.span_mask,
            "text_tokens": batch.span_mask.sum(dim=1) - len(template.suffix_ids),
            "role": role,
        }

    @property
    def int8(self) -> bool:
        """Whether generation runs on int8 weights (see ``modeling/int8_linears.py``); settable, not saved."""
        return self._int8

    @int8.setter
    def int8(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise GraceUserTypeError(f"int8 must be True or False, got {value!r}.")
        self._int8 = value

    def forward(self, features: dict[str, torch.Tensor], **kwargs: Any) -> dict[str, torch.Tensor]:
        """Generate rationales, keep the hidden states over ``[prompt | rationale]`` and expose the pooled span.

        Adds ``token_embeddings`` ``(B, T, H)``, replaces ``attention_mask`` with the pooled-span mask ``(B, T)``
        (what ``Pooling`` averages over), and adds ``rationale_ids`` / ``rationale_mask`` ``(B, G)``.
        """
        with linear_weights(self.model, features["input_ids"].shape[0], int8=self._int8):
            return self._embed(features, **kwargs)

    def _embed(self, features: dict[str, torch.Tensor], **kwargs: Any) -> dict[str, torch.Tensor]:
        ids, att, prompt_span = features["input_ids"], features["attention_mask"], features["prompt_span_mask"]
        mode = self.mode_for(features.get("role") or self.default_role)
        lengths = features.get("text_tokens")
        spans = [mode.span] * len(ids) if lengths is None else [mode.span_for(int(n)) for n in lengths.tolist()]
        rows = [i for i, span in enumerate(spans) if span != "input"]  # the rows that get a rationale
        if not rows:
            rationale_ids = ids.new_zeros((ids.shape[0], 0))
            completion_mask, seq_att = rationale_ids, att
            features["token_embeddings"] = select_hidden_states(self.model, ids, att, self.layer)
        else:
            generated = self._generate_rows(ids, att, rows, mode.max_new_tokens, kwargs.get("decode_rows"))
            rationale_ids, features["token_embeddings"] = generated.rationale_ids, generated.hidden
            completion_mask = rationale_mask(rationale_ids, self.end_ids)
            generating = set(rows)
            completion_mask[[i for i in range(len(ids)) if i not in generating]] = 0  # input-only rows wrote nothing
            seq_att = torch.cat([att, completion_mask], 1)
        features["sequence_mask"] = seq_att
        features["attention_mask"] = pooled_span_masks(prompt_span, completion_mask, spans)
        features["rationale_ids"], features["rationale_mask"] = rationale_ids, completion_mask
        return features

    def _generate_rows(
        self, ids: torch.Tensor, att: torch.Tensor, rows: list[int], max_new_tokens: int, decode_rows: int | None
    ) -> GeneratedBatch:
        """Rationales and hidden states of ``rows`` of the batch; the other rows get their prompt's states only.

        With greedy decoding and the installed library, the batch goes through the refilled decode (``refill.py``):
        its prompts are prefilled in runs of similar length (less padding), and with ``decode_rows`` at most that
        many rows are decoded at a time, the rows that finish refilled with the next texts (a corpus hands a whole
        chunk to one call, and every decode step stays full). Same vectors and rationales as a batch of its own;
        ``decode_rows`` None: all rows of the batch at once.

        Layout as for the whole batch (``rationale_ids`` ``(B, G)``, ``hidden`` ``(B, P + G, H)``): the rows without
        a rationale (a role mode's length threshold) hold their input-only states and padding, so each row's vector
        is what it would be in a batch of its own kind.
        """
        run = generate_fn()
        settings = dataclasses.replace(self.settings, max_new_tokens=max_new_tokens)
        end_ids, pad, layer = self.end_ids, self.pad_token_id, self.layer
        refill = refill_fn() if not settings.do_sample else None

        def generate(i: torch.Tensor, a: torch.Tensor) -> GeneratedBatch:
            if refill is not None:
                in_flight = decode_rows or len(i)
                return refill(self.model, i, a, settings, end_ids, pad, layer, in_flight, self.token_budget)
            return generate_packed(
                lambda i_, a_: run(self.model, i_, a_, settings, end_ids, pad, layer), i, a, max_new_tokens,
                self.token_budget, pad,
            )  # fmt: skip

        if len(rows) == len(ids):
            return generate(ids, att)
        chosen, kept = torch.tensor(rows, device=ids.device), set(rows)
        others = torch.tensor([i for i in range(len(ids)) if i not in kept], device=ids.device)
        part = generate(ids[chosen], att[chosen])
        hidden = part.hidden.new_zeros((len(ids), *part.hidden.shape[1:]))
        hidden[chosen] = part.hidden
        hidden[others, : ids.shape[1]] = select_hidden_states(self.model, ids[others], att[others], layer)
        rationale_ids = part.rationale_ids.new_full((len(ids), part.rationale_ids.shape[1]), pad)
        rationale_ids[chosen] = part.rationale_ids
        return GeneratedBatch(rationale_ids=rationale_ids, hidden=hidden)

    def decode_rationale(self, rationale_ids: torch.Tensor, rationale_mask: torch.Tensor) -> str:
        """Text of one rationale (end and padding tokens dropped)."""
        kept = rationale_ids[rationale_mask.bool()].tolist()
        return self.tokenizer.decode(kept, skip_special_tokens=True).strip()

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        self.model.save_pretrained(output_path, safe_serialization=safe_serialization)
        self.tokenizer.save_pretrained(output_path)
        self.save_config(output_path)

    @classmethod
    def load(
        cls,
        model_name_or_path: str,
        subfolder: str = "",
        token: bool | str | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
        trust_remote_code: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        processor_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> RationaleGenerator:
        """Load from a saved folder or Hub repo; ``trust_remote_code`` also reaches backbones with custom code.

        Only the saved settings are read from ``grace_config.json``, type-checked (see ``settings.py``): the file
        comes with a downloaded model and must not reach run-time options such as ``token_budget``.
        """
        hub = dict(token=token, cache_folder=cache_folder, revision=revision, local_files_only=local_files_only)
        config = cls.load_config(model_name_or_path, subfolder=subfolder, **hub)
        config = read_saved_settings(config, f"{cls.config_file_name} of '{model_name_or_path}'")
        hf = dict(subfolder=subfolder, token=token, cache_dir=cache_folder, revision=revision)
        hf.update(local_files_only=local_files_only, trust_remote_code=trust_remote_code)
        return cls(
            model_name_or_path,
            **config,
            model_kwargs={**hf, **(model_kwargs or {})},
            processor_kwargs={**hf, **(processor_kwargs or {})},
        )
