"""The vLLM path pools vLLM's rationales exactly as the Hugging Face path pools its own.

On CPU, a stand-in for ``vllm.LLM`` returns the rationales the Hugging Face path wrote, in vLLM's output shape
(some with the end token in ``token_ids``, some reporting it only as ``stop_reason``), so everything but vLLM's own
decoding is checked. The real vLLM comparison runs only where a CUDA GPU and vllm are present.
"""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import TEXTS

from grace_st import save_grace_model, vllm_backend
from grace_st.vllm_backend import encode_with_vllm, load_vllm


class FakeLLM:
    """Answers ``generate`` with given rationales, cut at the first end token, as vLLM reports them."""

    def __init__(self, rationales: dict[tuple[int, ...], list[int]], end_ids: list[int]) -> None:
        self.rationales, self.end_ids, self.params = rationales, set(end_ids), None

    def generate(self, prompts, params):
        self.params = params
        outputs = []
        for number, prompt in enumerate(prompts):
            ids = self.rationales[tuple(prompt["prompt_token_ids"])]
            end = next((i for i, t in enumerate(ids) if t in self.end_ids), None)
            if end is None:
                completion = SimpleNamespace(token_ids=ids, stop_reason=None)
            elif number % 2:  # reported only as the stop reason
                completion = SimpleNamespace(token_ids=ids[:end], stop_reason=ids[end])
            else:
                completion = SimpleNamespace(token_ids=ids[: end + 1], stop_reason=ids[end])
            outputs.append(SimpleNamespace(outputs=[completion]))
        return outputs


@pytest.mark.parametrize("span", ["input_and_rationale", "rationale"])
def test_vllm_rationales_are_pooled_like_the_hf_path(build_tiny, span, monkeypatch):
    monkeypatch.setattr(vllm_backend, "_sampling_params", lambda g: SimpleNamespace(**vllm_backend.sampling_kwargs(g)))
    model = build_tiny(span=span, do_sample=True, seed=1, max_new_tokens=8)
    generator = model[0]
    free = [out["rationale_ids"].tolist() for out in model.encode(TEXTS, output_value=None)]
    generator.end_ids = sorted({*generator.end_ids, free[0][3], free[2][0]})  # rows end at different steps
    outs = model.encode(TEXTS, output_value=None)
    features = generator.preprocess(TEXTS)
    by_prompt = {}
    for row, mask, out in zip(features["input_ids"], features["attention_mask"], outs, strict=True):
        by_prompt[tuple(row[mask.bool()].tolist())] = out["rationale_ids"].tolist()
    llm = FakeLLM(by_prompt, generator.end_ids)
    vectors, rationales = encode_with_vllm(model, TEXTS, llm, batch_size=2)
    expected = torch.stack([out["sentence_embedding"] for out in outs]).numpy()
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    assert rationales == [generator.decode_rationale(o["rationale_ids"], o["rationale_mask"]) for o in outs]
    assert llm.params.max_tokens == 8 and list(llm.params.stop_token_ids) == generator.end_ids


gpu_and_vllm = pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("vllm") is None,
    reason="needs a CUDA GPU and vllm (pip install 'grace-st[vllm]')",
)


@gpu_and_vllm
@pytest.mark.real_backbone
def test_vllm_matches_the_hf_path_on_gpu(tmp_path):
    from grace_st import build_grace_model

    model = build_grace_model(max_new_tokens=32, device="cuda")
    folder = save_grace_model(model, tmp_path / "grace")
    llm = load_vllm(model, model=str(folder), dtype="float32")
    texts = [*TEXTS, "Stock markets fell sharply today after the central bank raised interest rates."]
    vectors, rationales = encode_with_vllm(model, texts, llm)
    hf = model.encode(texts, output_value=None)
    same = [
        i
        for i, out in enumerate(hf)
        if model[0].decode_rationale(out["rationale_ids"], out["rationale_mask"]) == rationales[i]
    ]
    assert len(same) >= len(texts) // 2, "greedy rationales mostly agree between vLLM and transformers"
    expected = torch.stack([out["sentence_embedding"].float().cpu() for out in hf]).numpy()
    cosine = (vectors[same] * expected[same]).sum(-1)
    assert cosine.min() > 1 - 1e-3, cosine
