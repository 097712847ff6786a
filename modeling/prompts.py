"""Prompt building: instruction and text through the backbone's chat template, as token ids.

GRACE pools over the user text and everything after it, never over the instruction prefix, so the boundary between
the two must be exact. Long texts must also be cut on tokens *before* templating, so that the template's special
tokens survive (the reference implementation cuts the rendered prompt and decodes it with
``skip_special_tokens=True``, which deletes them). Both needs are met by rendering the chat template once with a
placeholder in place of the text, splitting it there, and tokenising prefix, text and suffix separately:

    [ prefix: system turn + user-turn opener ][ text (cut to max_input_tokens) ][ suffix: template glue ]
      not pooled                                pooled                            pooled

Training and inference both call :func:`build_prompt_batch`, so the tokens a model is trained on are the tokens it
encodes with.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch


try:
    from grace_st.errors import GraceUserError
except ImportError:  # a folder's own copy, loaded without the library
    GraceUserError = ValueError  # type: ignore[misc,assignment]


DEFAULT_INSTRUCTION = (
    "Read and analyze the following text, then you need to provide your reasoning within <think></think> tags. "
    "Finally, generate a comprehensive understanding of this text."
)
"""The system prompt of the GRACE reference code, used for queries, documents, training and evaluation alike."""

PLAIN_TEMPLATE = "{instruction}\n\nText:\n{text}\n\nAnalysis:\n"
"""Used, with a warning, for backbones whose tokenizer has no chat template (base models)."""

_PLACEHOLDER = "GRACEUSERTEXTPLACEHOLDER"


@dataclass(frozen=True)
class PromptTemplate:
    """Token ids around the text for one instruction.

    Attributes:
        prefix_ids: the instruction part (system turn and the opener of the user turn). Never pooled.
        suffix_ids: the template glue between the text and the rationale (end of the user turn, assistant opener).
            Pooled, as in the reference's training reward.
        uses_chat_template: False when the plain fallback template was used.
    """

    prefix_ids: tuple[int, ...]
    suffix_ids: tuple[int, ...]
    uses_chat_template: bool


@dataclass
class PromptBatch:
    """A left-padded batch of prompts, with the mask of the prompt tokens that are pooled.

    Attributes:
        input_ids: ``(B, P)`` prompt token ids, left-padded.
        attention_mask: ``(B, P)`` 1 on real tokens.
        span_mask: ``(B, P)`` 1 on the text and the template glue; 0 on padding and on the instruction prefix.
        num_truncated: how many texts were cut to ``max_input_tokens``.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    span_mask: torch.Tensor
    num_truncated: int


def _render_chat(tokenizer: Any, instruction: str) -> str:
    """The chat template around the placeholder, the instruction as the system message.

    Templates that refuse a system role (Gemma's raise a jinja ``TemplateError`` from the template itself) get the
    instruction at the top of the user message instead, with a warning; any other error is not ours to hide.
    """
    from jinja2.exceptions import TemplateError, TemplateSyntaxError

    messages = [{"role": "system", "content": instruction}, {"role": "user", "content": _PLACEHOLDER}]
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except TemplateError as exc:
        if isinstance(exc, TemplateSyntaxError):  # a broken template (syntax, unknown filter): not a refusal
            raise
        warnings.warn(
            f"The chat template refused a system message ({exc}); GRACE puts the instruction at the top of the user "
            "message instead.",
            UserWarning,
            stacklevel=3,
        )
        merged = [{"role": "user", "content": f"{instruction}\n\n{_PLACEHOLDER}"}]
        return tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)


def template_for(tokenizer: Any, instruction: str) -> PromptTemplate:
    """Split the backbone's prompt format around the text, for one instruction.

    Backbones without a chat template get :data:`PLAIN_TEMPLATE` and a warning, because a base model has no turn
    structure to tell it where the text ends and its own writing begins.
    """
    if getattr(tokenizer, "chat_template", None):
        rendered, uses_chat = _render_chat(tokenizer, instruction), True
    else:
        warnings.warn(
            f"The tokenizer of this backbone ({getattr(tokenizer, 'name_or_path', '?')}) has no chat template; GRACE "
            f"uses its plain template {PLAIN_TEMPLATE!r}. An instruction-tuned backbone with a chat template writes "
            "better rationales.",
            UserWarning,
            stacklevel=2,
        )
        rendered, uses_chat = PLAIN_TEMPLATE.format(instruction=instruction, text=_PLACEHOLDER), False
    if rendered.count(_PLACEHOLDER) != 1:
        raise GraceUserError(
            "The chat template of this tokenizer does not render the user message verbatim exactly once, so GRACE "
            "cannot find where the text starts. Use a tokenizer whose template includes the user content as is."
        )
    prefix, suffix = rendered.split(_PLACEHOLDER)
    return PromptTemplate(
        prefix_ids=tuple(tokenizer(prefix, add_special_tokens=False)["input_ids"]),
        suffix_ids=tuple(tokenizer(suffix, add_special_tokens=False)["input_ids"]),
        uses_chat_template=uses_chat,
    )


def tokenize_texts(tokenizer: Any, texts: list[str], max_input_tokens: int) -> tuple[list[list[int]], int]:
    """Token ids of each text, cut to ``max_input_tokens``; returns them and how many were cut.

    Special-token strings typed inside a text (say a literal ``<|im_end|>``) are split into ordinary tokens, so a
    text can never close its own turn and change what is pooled.
    """
    ids = tokenizer(texts, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    truncated = sum(len(row) > max_input_tokens for row in ids)
    return [list(row[:max_input_tokens]) for row in ids], truncated


def build_prompt_batch(
    tokenizer: Any, template: PromptTemplate, texts: list[str], max_input_tokens: int, pad_token_id: int
) -> PromptBatch:
    """Left-padded prompt ids for ``texts`` with the pooled-span mask over the prompt part.

    Left padding keeps every prompt's last token at the same column, which ``generate`` needs for batched decoding.
    """
    text_ids, num_truncated = tokenize_texts(tokenizer, texts, max_input_tokens)
    prefix, suffix = list(template.prefix_ids), list(template.suffix_ids)
    rows = [prefix + ids + suffix for ids in text_ids]
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    span_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        start = width - len(row)  # (B, P): [pad ... pad | prefix | text | suffix]
        input_ids[i, start:] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, start:] = 1
        span_mask[i, start + len(prefix) :] = 1
    return PromptBatch(input_ids, attention_mask, span_mask, num_truncated)
