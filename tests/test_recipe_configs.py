"""The shipped training configs parse with `grace train`'s own parser and validate, and the CPU recipe stays GRACE."""

from __future__ import annotations

from pathlib import Path

import pytest

from grace_st.train.run import parse_args


CONFIGS = Path(__file__).resolve().parents[1] / "train" / "configs"


@pytest.mark.parametrize("name", ["quickstart.yaml", "cpu_recipe.yaml", "paper_qwen2.5-1.5b.yaml"])
def test_config_parses_and_validates(name, tmp_path):
    overrides = ["--output_dir", str(tmp_path)]
    if name.startswith("paper"):  # written for GPUs: bf16 on a CPU-only machine is refused by transformers itself
        overrides += ["--bf16", "false"]
    script_args, args, model_args = parse_args(["--config", str(CONFIGS / name), *overrides])
    assert script_args.dataset_name and args.max_completion_length >= 1


def test_cpu_recipe_writes_rationales_and_is_scored_on_the_suite(tmp_path):
    script_args, args, model_args = parse_args(
        ["--config", str(CONFIGS / "cpu_recipe.yaml"), "--output_dir", str(tmp_path)]
    )
    assert args.pooled_span == "input_and_rationale" and args.max_completion_length >= 16
    assert args.heldout_eval == "suite" and script_args.dataset_name == "grace:suite"
    assert args.contrastive_weight > 0 and args.policy_gradient_weight > 0  # GRPO and the contrastive term
    assert args.max_train_minutes is not None and args.max_train_minutes < 60
    assert model_args.model_name_or_path is None  # the embedded default backbone


def test_paper_config_mirrors_the_reference(tmp_path):
    _, args, model_args = parse_args(
        ["--config", str(CONFIGS / "paper_qwen2.5-1.5b.yaml"), "--output_dir", str(tmp_path), "--bf16", "false"]
    )
    assert (args.num_generations, args.temperature, args.anchor_temperature) == (8, 1.0, 0.5)
    assert (args.learning_rate, args.max_completion_length, args.beta, args.epsilon) == (1e-6, 2048, 0.0, 0.2)
    assert (args.consistency_weight, args.hard_negative_weight, args.reward_temperature) == (0.2, 0.2, 0.1)
    assert args.scale_rewards == "none" and not model_args.use_peft


def test_long_inputs_setting_names_the_value(tmp_path):
    from grace_st.train.config import GraceConfig

    with pytest.raises(ValueError, match="long_inputs='cut'"):
        GraceConfig(output_dir=str(tmp_path), bf16=False, long_inputs="cut")
    assert GraceConfig(output_dir=str(tmp_path), bf16=False).long_inputs == "drop"  # the reference's filter
