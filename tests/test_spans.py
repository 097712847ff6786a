"""The pooled-span masks, on hand-written tensors."""

from __future__ import annotations

import pytest
import torch

from grace_st.modeling.spans import pooled_span_mask, rationale_mask


def test_rationale_mask_keeps_up_to_and_including_first_end_token():
    ids = torch.tensor([[5, 6, 2, 9, 2], [7, 3, 8, 8, 8], [2, 4, 4, 4, 4]])
    assert rationale_mask(ids, end_ids=[2, 3]).tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]]


def test_rationale_mask_without_end_token_keeps_everything():
    assert rationale_mask(torch.tensor([[4, 5, 6]]), end_ids=[2]).tolist() == [[1, 1, 1]]


def test_pooled_span_variants():
    prompt = torch.tensor([[0, 0, 1, 1]])
    completion = torch.tensor([[1, 1, 0]])
    assert pooled_span_mask(prompt, completion, "input_and_rationale").tolist() == [[0, 0, 1, 1, 1, 1, 0]]
    assert pooled_span_mask(prompt, completion, "rationale").tolist() == [[0, 0, 0, 0, 1, 1, 0]]
    assert pooled_span_mask(prompt, None, "input").tolist() == [[0, 0, 1, 1]]
    with pytest.raises(ValueError, match="Valid spans"):
        pooled_span_mask(prompt, completion, "everything")
