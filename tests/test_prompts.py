"""Prompt building: the exact token layout, token-level truncation, and the plain-template fallback."""

from __future__ import annotations

import warnings

import pytest
from jinja2.exceptions import TemplateSyntaxError
from transformers import AutoTokenizer

from grace_st.modeling.prompts import DEFAULT_INSTRUCTION, build_prompt_batch, template_for


def test_template_splits_chat_format_around_the_text(tiny_backbone):
    """prefix + text + suffix, decoded, is exactly what the chat template renders for that text."""
    tok = AutoTokenizer.from_pretrained(tiny_backbone)
    template = template_for(tok, DEFAULT_INSTRUCTION)
    text = "A cat sat on the mat."
    messages = [{"role": "system", "content": DEFAULT_INSTRUCTION}, {"role": "user", "content": text}]
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    batch = build_prompt_batch(tok, template, [text], max_input_tokens=64, pad_token_id=tok.pad_token_id)
    assert tok.decode(batch.input_ids[0]) == rendered
    assert template.uses_chat_template
    assert tok.decode(list(template.prefix_ids)).endswith("<|im_start|>user\n")
    assert tok.decode(list(template.suffix_ids)) == "<|im_end|>\n<|im_start|>assistant\n"


def test_span_mask_covers_text_and_glue_not_instruction_or_padding(tiny_backbone):
    tok = AutoTokenizer.from_pretrained(tiny_backbone)
    template = template_for(tok, DEFAULT_INSTRUCTION)
    texts = ["short", "a much longer text about cats and the mat"]
    batch = build_prompt_batch(tok, template, texts, max_input_tokens=64, pad_token_id=tok.pad_token_id)
    for row, text in enumerate(texts):
        pooled = batch.input_ids[row][batch.span_mask[row].bool()].tolist()
        assert tok.decode(pooled) == text + "<|im_end|>\n<|im_start|>assistant\n"
    assert batch.attention_mask[0, 0] == 0, "the shorter prompt is left-padded"
    assert (batch.span_mask <= batch.attention_mask).all()


def test_long_text_is_cut_on_tokens_before_templating(tiny_backbone):
    """Truncation never eats the template: the suffix (end of turn, assistant opener) is always intact."""
    tok = AutoTokenizer.from_pretrained(tiny_backbone)
    template = template_for(tok, DEFAULT_INSTRUCTION)
    long_text = "the cat sat on the mat " * 50
    batch = build_prompt_batch(tok, template, [long_text, "hi"], max_input_tokens=10, pad_token_id=tok.pad_token_id)
    assert batch.num_truncated == 1
    row = batch.input_ids[0].tolist()
    assert row[-len(template.suffix_ids) :] == list(template.suffix_ids)
    assert int(batch.span_mask[0].sum()) == 10 + len(template.suffix_ids)


def test_special_token_strings_inside_a_text_stay_text(tiny_backbone):
    """A literal '<|im_end|>' typed in a text cannot end the user turn early."""
    tok = AutoTokenizer.from_pretrained(tiny_backbone)
    template = template_for(tok, DEFAULT_INSTRUCTION)
    batch = build_prompt_batch(tok, template, ["a <|im_end|> b"], 64, tok.pad_token_id)
    text_ids = batch.input_ids[0, len(template.prefix_ids) : -len(template.suffix_ids)].tolist()
    assert tok.convert_tokens_to_ids("<|im_end|>") not in text_ids


def test_backbone_without_chat_template_uses_plain_template_with_warning(tiny_base_backbone):
    tok = AutoTokenizer.from_pretrained(tiny_base_backbone)
    with pytest.warns(UserWarning, match="no chat template"):
        template = template_for(tok, "Explain the text.")
    assert not template.uses_chat_template
    assert tok.decode(list(template.prefix_ids)) == "Explain the text.\n\nText:\n"
    assert tok.decode(list(template.suffix_ids)) == "\n\nAnalysis:\n"


_NO_SYSTEM_ROLE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}<turn>{{ m['role'] }}\n{{ m['content'] }}<end>\n{% endfor %}<turn>model\n"
)


def test_a_template_without_a_system_role_gets_the_instruction_in_the_user_turn(tiny_backbone):
    tok = AutoTokenizer.from_pretrained(tiny_backbone)
    tok.chat_template = _NO_SYSTEM_ROLE
    with pytest.warns(UserWarning, match="refused a system message"):
        template = template_for(tok, "Explain it.")
    assert tok.decode(list(template.prefix_ids)) == "<turn>user\nExplain it.\n\n"


def test_a_broken_template_is_not_hidden_behind_the_fallback(tiny_backbone):
    """Only the template's own refusal switches formats; any other error reaches the caller as it is."""
    tok = AutoTokenizer.from_pretrained(tiny_backbone)
    tok.chat_template = "{{ messages[0]['content'] | no_such_filter }}"
    with warnings.catch_warnings(record=True) as seen, pytest.raises(TemplateSyntaxError, match="no_such_filter"):
        warnings.simplefilter("always")
        template_for(tok, "Explain it.")
    assert not [w for w in seen if "refused a system message" in str(w.message)], "no fallback was tried"
