"""The validation learning curve: scored at the right steps, invisible to training, plotted into the card."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from test_suite_train import _argv as suite_argv
from test_suite_train import needs_man_pages
from test_training import make_trainer, tiny_args, triples

from grace_st.train import run as run_module
from grace_st.train.config import GraceConfig
from grace_st.train.curve_plot import moving_average, plot_learning_curve, reward_points
from grace_st.train.learning_curve import LearningCurve, score_policy, validation_points


CURVE = dict(heldout_eval="suite", learning_curve=True, eval_steps=2)


class RecordingScore:
    """A tiny stand-in for the suite: records the step and the model it saw, and draws from every random stream."""

    def __init__(self, trainer=None):
        self.trainer, self.steps, self.models = trainer, [], []

    def __call__(self, model):
        self.steps.append(self.trainer.state.global_step if self.trainer else None)
        self.models.append(model)
        torch.rand(3), random.random(), np.random.rand()  # noqa: NPY002 - as mteb's reseeding would disturb them
        vector = model.encode(["a cat on a mat"], convert_to_tensor=True)
        return {"TaskA": float(vector.abs().mean()), "TaskB": 0.5}


def _snapshot(model):
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def _same(before, model):
    after = model.state_dict()
    return before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_scores_every_eval_steps_and_logs_each_point(ending_backbone, tmp_path):
    trainer = make_trainer(ending_backbone, tiny_args(tmp_path, max_steps=4, **CURVE), triples(8))
    score = RecordingScore(trainer)
    trainer.add_callback(LearningCurve(trainer, score_fn=score))
    trainer.train()
    assert score.steps == [2, 4]
    logged = {e["step"]: e for e in trainer.state.log_history if "heldout/validation/mean" in e}
    assert sorted(logged) == [2, 4]
    assert logged[2]["heldout/validation/TaskB"] == 0.5 and "grace/seconds/learning_curve" in logged[2]
    assert "reward" in logged[2]  # went out with the step's regular log, next to GRPO's own metrics
    points = validation_points(trainer.state.log_history)
    assert [p["step"] for p in points] == [2, 4]
    assert points[0]["per_task"] == {"TaskA": logged[2]["heldout/validation/TaskA"], "TaskB": 0.5}
    assert points[0]["mean"] == pytest.approx((points[0]["per_task"]["TaskA"] + 0.5) / 2)


def test_a_step_that_stops_training_early_is_not_scored(ending_backbone, tmp_path):
    from grace_st.train.time_budget import TimeBudget

    args = tiny_args(tmp_path, max_steps=4, **{**CURVE, "eval_steps": 1})
    trainer = make_trainer(ending_backbone, args, triples(8))
    trainer.add_callback(TimeBudget(minutes=1e-6))  # spent at once: stop after step 1, as a SIGTERM would
    score = RecordingScore(trainer)
    trainer.add_callback(LearningCurve(trainer, score_fn=score))
    trainer.train()
    assert trainer.state.global_step == 1 and score.steps == []


def test_a_resumed_run_keeps_the_points_scored_before_the_checkpoint(ending_backbone, tmp_path):
    settings = dict(eval_steps=1, save_strategy="steps", save_steps=2, heldout_eval="suite", learning_curve=True)
    first = make_trainer(ending_backbone, tiny_args(tmp_path, max_steps=2, **settings), triples(8))
    first.add_callback(LearningCurve(first, score_fn=RecordingScore(first)))
    first.train()
    resumed = make_trainer(ending_backbone, tiny_args(tmp_path, max_steps=4, **settings), triples(8))
    score = RecordingScore(resumed)
    resumed.add_callback(LearningCurve(resumed, score_fn=score))
    resumed.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-2"))
    assert score.steps == [3, 4]  # steps 1-2 are not scored again ...
    assert [p["step"] for p in validation_points(resumed.state.log_history)] == [1, 2, 3, 4]  # ... nor lost


@pytest.mark.parametrize("lora", [False, True])
def test_scoring_leaves_the_policy_and_random_streams_untouched(ending_backbone, tmp_path, lora):
    kwargs = {}
    if lora:
        from peft import LoraConfig

        targets = ["q_proj", "v_proj"]
        kwargs["peft_config"] = LoraConfig(r=4, lora_alpha=8, target_modules=targets, task_type="CAUSAL_LM")
    trainer = make_trainer(ending_backbone, tiny_args(tmp_path, **CURVE), triples(8), **kwargs)
    policy = trainer.model
    if lora:  # a non-zero adapter, so that merging it would change the base weights
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(param, std=0.5)
    policy.train()
    (policy.get_base_model() if lora else policy).model.layers[0].eval()  # mixed modes must survive too
    modes = [m.training for m in policy.modules()]
    before = _snapshot(policy)
    rng = (torch.get_rng_state(), random.getstate(), np.random.get_state())  # noqa: NPY002

    score = RecordingScore()
    scores = score_policy(policy, trainer.processing_class, trainer.args, score)

    assert set(scores) == {"TaskA", "TaskB"}
    assert _same(before, policy) and [m.training for m in policy.modules()] == modes
    assert torch.equal(torch.get_rng_state(), rng[0]) and random.getstate() == rng[1]
    assert np.array_equal(np.random.get_state()[1], rng[2][1])  # noqa: NPY002
    scored = score.models[0][0].model.state_dict()
    assert not any("lora" in name for name in scored)  # the scored copy carries the adapter merged ...
    if lora:
        assert any("lora_A" in name for name in before)  # ... the live policy still has it, unmerged
        assert not any(getattr(m, "merged", False) for m in policy.modules())
        base = {k.replace("base_model.model.", "").replace(".base_layer", ""): v for k, v in before.items()}
        q_proj = "model.layers.0.self_attn.q_proj.weight"
        assert not torch.equal(scored[q_proj], base[q_proj])  # merged weights differ from the base's


def test_training_is_identical_with_and_without_the_curve(ending_backbone, tmp_path):
    def run(with_curve):
        args = tiny_args(tmp_path / str(with_curve), max_steps=3, eval_steps=1, heldout_eval="suite")
        trainer = make_trainer(ending_backbone, args, triples(8))
        if with_curve:
            trainer.add_callback(LearningCurve(trainer, score_fn=RecordingScore(trainer)))
        trainer.train()
        rewards = [e["reward"] for e in trainer.state.log_history if "reward" in e]
        return _snapshot(trainer.model), rewards

    without, rewards_without = run(False)
    with_curve, rewards_with = run(True)
    assert rewards_with == rewards_without
    assert all(torch.equal(without[name], with_curve[name]) for name in without)


def test_plot_is_written_for_rewards_alone_and_with_validation(tmp_path):
    log = [{"step": s, "reward": 0.1 * s} for s in range(1, 31)]
    log.append({"step": 10, "heldout/validation/mean": 0.4, "heldout/validation/TaskA": 0.4, "loss": 0.0})
    points = validation_points(log)
    assert points == [{"step": 10, "mean": 0.4, "per_task": {"TaskA": 0.4}}]
    alone = plot_learning_curve(reward_points(log), [], tmp_path / "a.png")
    both = plot_learning_curve(reward_points(log), points, tmp_path / "b.png")
    for path in (alone, both):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert both.stat().st_size > alone.stat().st_size  # the second panel is drawn
    assert plot_learning_curve([], points, tmp_path / "c.png") is None
    assert moving_average([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"learning_curve_max_queries": 0}, "learning_curve_max_queries=0"),
        ({"learning_curve": True, "eval_steps": 2}, "heldout_eval=None"),
        ({"learning_curve": True, "heldout_eval": "suite"}, "eval_steps=None"),
        ({"learning_curve": True, "heldout_eval": "suite", "eval_steps": -1}, "eval_steps=-1"),
        ({"learning_curve": True, "heldout_eval": "suite", "eval_steps": 2.5}, "eval_steps=2.5"),
    ],
)
def test_bad_learning_curve_settings_name_the_value(tmp_path, overrides, named):
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        GraceConfig(output_dir=str(tmp_path), bf16=False, **overrides)


@needs_man_pages
def test_a_run_with_the_curve_plots_it_into_the_card_summary_and_push(tiny_backbone, data_file, tmp_path, monkeypatch):  # noqa: F811
    """The real suite scoring path on a tiny model: 2 steps, scored at both, 2 validation queries per task."""
    from grace_st.push import _operations

    monkeypatch.setenv("GRACE_CACHE", str(tmp_path / "grace-cache"))
    overrides = dict(max_steps=2, eval_steps=1, learning_curve=True, learning_curve_max_queries=2)
    out = tmp_path / "out"
    summary = run_module.run_training(
        *run_module.parse_args(suite_argv(tiny_backbone, data_file, out, heldout_eval_max_queries=2, **overrides))
    )
    curve = summary["validation_curve"]
    assert [point["step"] for point in curve] == [0, 1, 2] and len(curve[0]["per_task"]) == 3
    assert all(0 <= point["mean"] <= 1 for point in curve)
    # step 0 is the untrained model in the run's own mode on the same validation queries as the base's scoring
    base = json.loads((out / "checkpoints" / "base_score.json").read_text())["suite"]["rationale"]["validation"]
    assert curve[0]["per_task"] == pytest.approx({name: task["score"] for name, task in base.items()})
    assert json.loads((out / "train_summary.json").read_text())["validation_curve"] == curve
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    card = (out / "README.md").read_text()
    assert "](learning_curve.png)" in card and f"{curve[2]['mean']:.4f} at step 2." in card
    assert "learning_curve.png" in {op.path_in_repo for op in _operations(out, "me/run")}
