"""GRACE training on tiny random models: parameters move, rows stay aligned, the policy pools like the encoder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from grace_st.train.config import GraceConfig
from grace_st.train.data import prepare_dataset
from grace_st.train.policy_embedding import PolicyEmbedder
from grace_st.train.rollouts import GraceRollouts
from grace_st.train.trainer import GraceGRPOTrainer


def triples(n: int) -> Dataset:
    return Dataset.from_list(
        [{"query": f"query {i} cat", "positive": f"pos {i} mat", "negative": f"neg {i} rain"} for i in range(n)]
    )


def tiny_args(tmp_path: Path, **overrides) -> GraceConfig:
    settings = dict(
        output_dir=str(tmp_path / "run"),
        max_steps=2,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=8,
        gradient_checkpointing=False,
        learning_rate=1e-2,
        weight_decay=0.0,
        report_to="none",
        save_strategy="no",
        max_input_tokens=64,
        seed=0,
    )
    return GraceConfig(**{**settings, **overrides})


def make_trainer(backbone: Path, args: GraceConfig, dataset: Dataset, **kwargs) -> GraceGRPOTrainer:
    tokenizer = AutoTokenizer.from_pretrained(backbone, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(backbone)
    data = prepare_dataset(dataset, args.objective, tokenizer, args.max_input_tokens)
    return GraceGRPOTrainer(model, args, data, processing_class=tokenizer, **kwargs)


@pytest.mark.parametrize("objective", ["supervised", "unsupervised"])
def test_two_steps_change_every_trainable_parameter(ending_backbone, tmp_path, objective):
    data = triples(8) if objective == "supervised" else Dataset.from_list([{"text": f"text {i}"} for i in range(8)])
    trainer = make_trainer(ending_backbone, tiny_args(tmp_path, objective=objective), data)
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    unchanged = [name for name, p in trainer.model.named_parameters() if torch.equal(before[name], p.detach())]
    assert not unchanged, f"parameters not updated: {unchanged}"
    rewards = [entry["reward"] for entry in trainer.state.log_history if "reward" in entry]
    assert len(rewards) == 2 and all(r == r for r in rewards)  # logged and not NaN


def test_lora_trains_only_the_adapter(ending_backbone, tmp_path):
    from peft import LoraConfig

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = make_trainer(ending_backbone, tiny_args(tmp_path), triples(8), peft_config=lora)
    trainable = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    frozen = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if not p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    trainer.train()
    params = dict(trainer.model.named_parameters())
    assert all(not torch.equal(trainable[n], params[n].detach()) for n in trainable)
    assert all(torch.equal(frozen[n], params[n].detach()) for n in frozen)

    # the saved encoder carries the merged weights: no adapter left, and vectors differ from the untrained model's
    from grace_st import build_grace_model
    from grace_st.train.export import grace_model_from_policy

    model = grace_model_from_policy(trainer.model, trainer.processing_class, trainer.args, tmp_path / "export")
    assert not any("lora" in name for name in model[0].model.state_dict())
    untrained = build_grace_model(str(ending_backbone), device="cpu", max_new_tokens=8, max_input_tokens=64)
    texts = ["A cat sat on the mat."]
    assert not torch.allclose(
        model.encode(texts, convert_to_tensor=True), untrained.encode(texts, convert_to_tensor=True)
    )


def test_steps_per_generation_and_iterations_reuse_one_generation(ending_backbone, tmp_path, monkeypatch):
    """One rollout call feeds 2 steps of 2 iterations each; the policy still trains on it."""
    calls = []
    rollout = GraceRollouts.__call__

    def counted(self, prompts, trainer):
        out = rollout(self, prompts, trainer)
        calls.append(len(prompts))
        assert not any(e.requires_grad for key in out if key.endswith("embedding") for e in out[key]), "no gradient"
        return out

    monkeypatch.setattr(GraceRollouts, "__call__", counted)
    args = tiny_args(tmp_path, max_steps=4, steps_per_generation=2, num_iterations=2)
    trainer = make_trainer(ending_backbone, args, triples(8))
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    assert calls == [8], "4 steps = 1 generation of 2 batches x 2 iterations"
    assert any(not torch.equal(before[name], p.detach()) for name, p in trainer.model.named_parameters())


def _number(text: str) -> int:
    return int(re.search(r"\d+", text).group())


def test_query_positive_and_negative_stay_aligned(ending_backbone, tmp_path, monkeypatch):
    """With one-hot embeddings keyed by example number, cos(query, positive) is 1 only if the rows line up."""
    write = GraceRollouts.write

    def one_hot_write(self, policy, parts, end_ids):
        written = write(self, policy, parts, end_ids)
        for part, out in zip(parts, written, strict=True):
            slots = [_number(t) + (50 if t.startswith("neg") else 0) for t in part.texts]
            out.embeddings = torch.nn.functional.one_hot(torch.tensor(slots), num_classes=128).float()
        return written

    monkeypatch.setattr(GraceRollouts, "write", one_hot_write)
    args = tiny_args(tmp_path, max_steps=3, per_device_train_batch_size=6, num_generations=3)
    trainer = make_trainer(ending_backbone, args, triples(12))  # shuffled by TRL's sampler (shuffle_dataset=True)
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "grace/positive" in entry]
    assert len(logs) == 3
    for entry in logs:
        assert entry["grace/positive"] == pytest.approx(1.0)  # each rollout scored against its own query
        assert entry["grace/negative"] == pytest.approx(0.0)  # ... and its own negative, not another example's
        assert entry["grace/hard_negative"] == pytest.approx(0.0)  # other examples are other slots


def test_policy_embedding_equals_the_encoder(ending_backbone):
    """The reward's vector of a text + rationale is the saved encoder's vector of that text."""
    from grace_st import build_grace_model

    model = build_grace_model(str(ending_backbone), device="cpu", max_new_tokens=8, max_input_tokens=64)
    texts = ["A cat sat on the mat.", "Stock markets fell sharply today after the announcement."]
    features = model.encode(texts, output_value=None, convert_to_tensor=False)
    rationales = [f["rationale_ids"][f["rationale_mask"].bool()].tolist() for f in features]
    generator = model[0]
    embedder = PolicyEmbedder(
        generator.tokenizer, {"document": generator.instruction}, max_input_tokens=64, span=generator.span
    )
    ours = embedder.embed(generator.model, texts, "document", rationales)
    theirs = torch.stack([f["sentence_embedding"] for f in features])
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_trainer_rejects_unprepared_data(ending_backbone, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(ending_backbone)
    model = AutoModelForCausalLM.from_pretrained(ending_backbone)
    with pytest.raises(ValueError, match="prepare_dataset"):
        GraceGRPOTrainer(model, tiny_args(tmp_path), triples(4), processing_class=tokenizer)
