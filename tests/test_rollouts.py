"""Training rollouts: the single pass samples like ``generate``, embeds like the encoder, and the reward needs only
the columns the rollout function returns."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch
import torch.nn.functional as F
from conftest import TEXTS
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from grace_st import build_grace_model
from grace_st.errors import GraceUserError
from grace_st.modeling.generation import end_token_ids, generate_rationales
from grace_st.modeling.prompts import build_prompt_batch
from grace_st.modeling.role_modes import RoleMode
from grace_st.rationale_generator import two_pass_generation
from grace_st.train.config import GraceConfig
from grace_st.train.policy_embedding import PolicyEmbedder
from grace_st.train.reward_function import GraceReward
from grace_st.train.rewards import RewardWeights, supervised_reward, unsupervised_reward
from grace_st.train.rollouts import GraceRollouts, Part, check_generation_settings, examples_of, sequence_span_mask


@pytest.fixture(scope="module")
def ending_backbone(tiny_backbone, tmp_path_factory):
    """The tiny backbone with many end tokens, so sampled rationales end at varied lengths."""
    path = tmp_path_factory.mktemp("ending") / "tiny"
    shutil.copytree(tiny_backbone, path)
    config = GenerationConfig.from_pretrained(path)
    config.eos_token_id = [AutoTokenizer.from_pretrained(path).eos_token_id, *range(120, 200)]
    config.save_pretrained(path)
    return path


def _rollouts(backbone, tmp_path, **overrides):
    settings = dict(output_dir=str(tmp_path), max_completion_length=8, max_input_tokens=64, report_to="none")
    args = GraceConfig(**{**settings, **overrides})
    tokenizer = AutoTokenizer.from_pretrained(backbone, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(backbone).eval()
    rollouts = GraceRollouts(args)
    prompts = {role: args.prompt_for(role) for role in ("query", "document")}
    rollouts.embedder = PolicyEmbedder(tokenizer, prompts, args.max_input_tokens, args.pooled_span, args.pooled_layer)
    return rollouts, model, end_token_ids(model, tokenizer)


def test_rollouts_and_anchors_in_one_batch_sample_like_their_own_generate_calls(ending_backbone, tmp_path):
    """One decode loop, two row groups: each draws generate()'s tokens for its seed, with real log-probabilities."""
    rollouts, model, end_ids = _rollouts(ending_backbone, tmp_path, temperature=0.7, top_p=0.9, anchor_temperature=0.4)
    parts = [
        Part([text for text in TEXTS[:3] for _ in range(2)], "document", rollouts.rollout_settings),
        Part(TEXTS[3:], "query", rollouts.anchor_settings),
    ]
    for seed, part in enumerate(parts):
        part.generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        written = rollouts.write(model, parts, end_ids)
    embedder = rollouts.embedder
    for seed, (part, out) in enumerate(zip(parts, written, strict=True)):
        template = embedder.templates[part.role]
        batch = build_prompt_batch(embedder.tokenizer, template, part.texts, 64, embedder.pad_token_id)
        torch.manual_seed(seed)
        reference = generate_rationales(
            model, batch.input_ids, batch.attention_mask, part.settings, end_ids, embedder.pad_token_id
        )
        assert len({len(ids) for ids in out.completion_ids}) > 1, "rows end at different steps"
        for row, ids in zip(reference.tolist(), out.completion_ids, strict=True):
            assert row[: len(ids)] == ids and all(t == embedder.pad_token_id for t in row[len(ids) :])
            assert ids[-1] in end_ids or len(ids) == 8
        assert out.truncated == [ids[-1] not in end_ids for ids in out.completion_ids]
        for prompt, ids, logprobs in zip(out.prompt_ids, out.completion_ids, out.logprobs, strict=True):
            with torch.no_grad():
                logits = model(torch.tensor([prompt + ids])).logits[0, len(prompt) - 1 : -1]
            expected = (logits / part.settings.temperature).log_softmax(-1).gather(1, torch.tensor(ids)[:, None])
            assert torch.allclose(torch.tensor(logprobs), expected.squeeze(1), atol=1e-4)
        expected = embedder.embed(model, part.texts, part.role, out.completion_ids)  # a separate forward
        assert torch.allclose(out.embeddings, expected, atol=1e-5)


@pytest.mark.parametrize("span", ["input_and_rationale", "rationale"])
def test_rollout_embedding_equals_the_encoders_encode(ending_backbone, tmp_path, span):
    """Same seed, same texts: the rollouts write the encoder's rationales and give its vectors (two-pass encode)."""
    rollouts, model, end_ids = _rollouts(ending_backbone, tmp_path, temperature=0.8, top_p=0.95, pooled_span=span)
    encoder = build_grace_model(
        str(ending_backbone), device="cpu", max_new_tokens=8, max_input_tokens=64, span=span, do_sample=True,
        temperature=0.8, top_p=0.95, seed=5,
    )  # fmt: skip
    lengths = set()
    for seed, text in enumerate(TEXTS):  # one text per call: encode() reorders a batch by length (other draws)
        encoder[0].settings = dataclasses.replace(encoder[0].settings, seed=seed)
        with two_pass_generation():  # the two-pass path: generate, then a separate forward
            out = encoder.encode([text], output_value=None)[0]
        torch.manual_seed(seed)
        with torch.no_grad():
            (written,) = rollouts.write(model, [Part([text], "document", rollouts.rollout_settings)], end_ids)
        assert out["rationale_ids"][out["rationale_mask"].bool()].tolist() == written.completion_ids[0]
        assert torch.allclose(written.embeddings[0], out["sentence_embedding"], atol=1e-5)
        lengths.add(len(written.completion_ids[0]))
    assert len(lengths) > 1, "rationales of different lengths"


def test_columns_give_the_anchor_sequences_and_their_spans(ending_backbone, tmp_path):
    """What the contrastive loss reads: anchor ids = the encoder's prompt + rationale; the span helper pools them."""
    rollouts, model, end_ids = _rollouts(ending_backbone, tmp_path)
    examples = [{"text": f"pos {i}", "query": f"query {i}", "negative": f"neg {i}"} for i in range(2)]
    with torch.no_grad():
        texts = [e["text"] for e in examples for _ in range(2)]
        parts = [Part(texts, "document", rollouts.rollout_settings), *rollouts._anchor_parts(examples, None)]
        rollout_rows, *anchor_rows = rollouts.write(model, parts, end_ids)
        anchors = rollouts._anchor_outputs(anchor_rows, len(examples))
    columns = rollouts._columns(rollout_rows, anchors, k=2, first=4, seconds={"rollout_generation": 1.0})
    assert columns["grace_example"] == [4, 4, 5, 5]
    embedder = rollouts.embedder
    for row in range(4):
        example = examples[row // 2]
        for name, text, role in (("query", example["query"], "query"), ("negative", example["negative"], "document")):
            ids, prompt_len = columns[f"grace_{name}_ids"][row], columns[f"grace_{name}_prompt_len"][row]
            prefix_len = columns[f"grace_{name}_prefix_len"][row]
            assert ids[:prompt_len] == embedder.prompt_ids([text], role)[0]
            assert prefix_len == len(embedder.templates[role].prefix_ids)
            mask = sequence_span_mask(len(ids), prompt_len, prefix_len, "input_and_rationale")
            with torch.no_grad():
                hidden = model.model(torch.tensor([ids])).last_hidden_state[0]
            pooled = F.normalize((hidden * mask[:, None]).sum(0) / mask.sum(), dim=-1)
            assert torch.allclose(pooled, columns[f"grace_{name}_embedding"][row], atol=1e-5)
            expected = embedder.embed(model, [text], role, [ids[prompt_len:]])[0]
            assert torch.allclose(expected, columns[f"grace_{name}_embedding"][row], atol=1e-5)
    assert columns["grace_prefix_len"][0] == len(embedder.templates["document"].prefix_ids)


def test_reward_is_computed_from_the_columns_alone():
    """No trainer, no model: the reward of hand-made columns is the pure formula of the same tensors."""
    torch.manual_seed(0)
    batch, k, hidden = 3, 2, 5
    rollouts, queries, negatives = (
        torch.randn(batch, k, hidden),
        torch.randn(batch, hidden),
        torch.randn(batch, hidden),
    )
    truncated = torch.tensor([[False, True], [False, False], [True, False]])
    columns = dict(
        grace_example=[i // k for i in range(batch * k)],
        grace_embedding=list(F.normalize(rollouts, dim=-1).view(batch * k, hidden)),
        grace_truncated=truncated.flatten().tolist(),
        grace_query_embedding=[queries[i // k] for i in range(batch * k)],
        grace_negative_embedding=[negatives[i // k] for i in range(batch * k)],
    )
    weights = RewardWeights(truncation_penalty=-1.0)
    logged = {}
    reward = GraceReward("supervised", weights, "rollout")
    got = reward(["p"] * 6, ["c"] * 6, [[1]] * 6, log_metric=logged.__setitem__, **columns)
    expected = supervised_reward(queries, rollouts, negatives, truncated, weights, "rollout").reward.flatten()
    assert torch.allclose(torch.tensor(got), expected, atol=1e-5)
    assert got[1] == -1.0 and logged["grace/examples_in_reward"] == 3.0

    anchors = [queries[i // k] for i in range(batch * k)]
    unsupervised = GraceReward("unsupervised", weights)
    got = unsupervised(["p"] * 6, ["c"] * 6, [[1]] * 6, **{**columns, "grace_anchor_embedding": anchors})
    assert torch.allclose(
        torch.tensor(got), unsupervised_reward(queries, rollouts, truncated, weights).reward.flatten()
    )

    with pytest.raises(ValueError, match="grace_example must number the examples"):
        reward(["p"] * 6, ["c"] * 6, [[1]] * 6, **{**columns, "grace_example": [0, 1, 0, 1, 2, 2]})
    with pytest.raises(ValueError, match="needs columns \\['grace_anchor_embedding'\\]"):
        unsupervised(["p"] * 6, ["c"] * 6, [[1]] * 6, **columns)


@pytest.mark.parametrize(
    ("setting", "value"),
    [("top_k", 50), ("min_p", 0.1), ("repetition_penalty", 1.2), ("generation_kwargs", {"num_beams": 2})],
)
def test_settings_the_single_pass_lacks_are_rejected(tmp_path, setting, value):
    args = GraceConfig(output_dir=str(tmp_path), report_to="none", **{setting: value})
    with pytest.raises(ValueError, match=f"{setting}=.* is not supported .* Remove {setting}"):
        check_generation_settings(args)
    check_generation_settings(GraceConfig(output_dir=str(tmp_path), report_to="none"))  # defaults pass


def test_rows_must_hold_whole_examples():
    prompts = [[{"role": "user", "content": "a", "query": "q", "negative": "n"}]] * 2
    assert examples_of(prompts, 2, "supervised") == [{"text": "a", "query": "q", "negative": "n"}]
    with pytest.raises(ValueError, match="not a multiple of num_generations=2"):
        examples_of(prompts * 2 + prompts[:1], 2, "supervised")
    with pytest.raises(ValueError, match="needs each prompt to carry its query and negative"):
        examples_of(["plain text", "plain text"], 2, "supervised")
    assert examples_of(["plain text", "plain text"], 2, "unsupervised") == [{"text": "plain text"}]


def test_rollouts_run_the_policy_with_its_lora_adapter(ending_backbone, tmp_path):
    """The single pass (adapters folded into packed weights) samples and embeds as PEFT's own forward does."""
    from peft import LoraConfig, get_peft_model

    from grace_st.train.policy_embedding import decoder_of

    rollouts, model, end_ids = _rollouts(ending_backbone, tmp_path, temperature=0.9)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    policy = get_peft_model(model, lora)
    with torch.no_grad():
        for name, parameter in policy.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)  # a trained adapter: it changes the logits
    policy.eval()
    texts = [text for text in TEXTS[:3] for _ in range(2)]
    embedder = rollouts.embedder
    batch = build_prompt_batch(embedder.tokenizer, embedder.templates["document"], texts, 64, embedder.pad_token_id)
    torch.manual_seed(3)
    with torch.no_grad():
        (written,) = rollouts.write(decoder_of(policy), [Part(texts, "document", rollouts.rollout_settings)], end_ids)
    torch.manual_seed(3)
    settings, pad = rollouts.rollout_settings, embedder.pad_token_id
    reference = generate_rationales(policy, batch.input_ids, batch.attention_mask, settings, end_ids, pad)
    for row, ids in zip(reference.tolist(), written.completion_ids, strict=True):
        assert row[: len(ids)] == ids
    expected = embedder.embed(policy, texts, "document", written.completion_ids)  # PEFT's forward, unpacked
    assert torch.allclose(written.embeddings, expected, atol=1e-5)
    with policy.disable_adapter():
        without = embedder.embed(policy, texts, "document", written.completion_ids)
    assert not torch.allclose(written.embeddings, without, atol=1e-3), "the adapter is active"
    assert all("forward" not in vars(module) for module in policy.modules()), "packed forwards are removed"


def test_rollouts_and_anchors_embed_each_role_as_the_encoder_does(ending_backbone, tmp_path):
    """Per-role modes in training: documents (rollouts, negatives) and queries (anchors) get their role's span,
    budget and length threshold, giving the vectors encode_document / encode_query give with the same modes."""
    from grace_st.modeling.role_modes import RoleModes

    tokenizer = AutoTokenizer.from_pretrained(ending_backbone)
    lengths = [len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in TEXTS]
    threshold = sorted(lengths)[len(lengths) // 2]
    modes = RoleModes(RoleMode("rationale", max_new_tokens=3), RoleMode(input_only_above=threshold), preset="custom")
    rollouts, model, end_ids = _rollouts(ending_backbone, tmp_path, temperature=0.8, role_modes=modes.to_config())
    encoder = build_grace_model(
        str(ending_backbone), device="cpu", max_new_tokens=8, max_input_tokens=64, do_sample=True, temperature=0.8,
        role_modes=modes,
    )  # fmt: skip
    for seed, text in enumerate(TEXTS):
        encoder[0].settings = dataclasses.replace(encoder[0].settings, seed=seed)
        for role, encode in (("document", encoder.encode_document), ("query", encoder.encode_query)):
            with two_pass_generation():
                out = encode([text], output_value=None)[0]
            torch.manual_seed(seed)
            with torch.no_grad():
                (written,) = rollouts.write(model, [Part([text], role, rollouts.rollout_settings)], end_ids)
            assert torch.allclose(written.embeddings[0], out["sentence_embedding"], atol=1e-5), (role, text)
            if role == "query":
                assert out["rationale_ids"][out["rationale_mask"].bool()].tolist() == written.completion_ids[0]
                assert len(written.completion_ids[0]) <= 3, "the query budget caps what GRPO sees too"
    assert {length > threshold for length in lengths} == {True, False}, "both sides of the threshold were checked"


def test_training_role_modes_that_cannot_train_are_refused(tmp_path):
    base = dict(output_dir=str(tmp_path), max_completion_length=8, report_to="none")
    with pytest.raises(GraceUserError, match=r"embeds documents input-only, but GRACE's rollouts are rationales"):
        GraceConfig(**base, role_modes="query-only")
    with pytest.raises(GraceUserError, match=r"Unknown preset 'fastest'"):
        GraceConfig(**base, role_modes="fastest")
    with pytest.raises(GraceUserError, match=r"not supported with contrastive_weight > 0"):
        GraceConfig(**base, role_modes="full", contrastive_weight=1.0)
    assert GraceConfig(**base, role_modes="null").grace_role_modes() is None
    assert GraceConfig(**base, role_modes="adaptive:40").grace_role_mode("query") == RoleMode(
        "input_and_rationale", 8, 40
    )


def test_the_trained_model_carries_the_runs_role_modes(tiny_backbone, tmp_path):
    from grace_st.modeling.role_modes import preset_modes
    from grace_st.train.export import grace_model_from_policy

    args = GraceConfig(
        output_dir=str(tmp_path),
        max_completion_length=8,
        max_input_tokens=64,
        report_to="none",
        role_modes="adaptive:40",
    )
    policy = AutoModelForCausalLM.from_pretrained(tiny_backbone)
    model = grace_model_from_policy(policy, AutoTokenizer.from_pretrained(tiny_backbone), args, tmp_path / "work")
    assert model[0].role_modes == preset_modes("adaptive:40") and model[0].max_new_tokens == 8
