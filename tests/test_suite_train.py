"""``grace train --heldout_eval suite``: base scores kept beside the checkpoints across a resume, and the report."""

from __future__ import annotations

import json
import os
import signal

import pytest
from suite_markers import needs_man_pages
from test_train_run import _argv as train_run_argv

from grace_st.train import heldout
from grace_st.train import run as run_module
from grace_st.train.config import GraceConfig
from grace_st.train.trainer import GraceGRPOTrainer


def _argv(backbone, data, out, **overrides):
    """`grace train` arguments of test_train_run's tiny run, scored on the suite (a few queries per task)."""
    suite = {"max_steps": 3, "num_card_examples": 0, "heldout_eval": "suite", "heldout_eval_max_queries": 4}
    return train_run_argv(backbone, data, out, **{**suite, "heldout_eval_resamples": 200, **overrides})


@needs_man_pages
def test_base_scores_survive_a_resume_and_the_report_has_its_keys(tiny_backbone, data_file, tmp_path, monkeypatch):
    monkeypatch.setenv("GRACE_CACHE", str(tmp_path / "grace-cache"))
    calls = []
    original_scores = heldout.suite_scores

    def counting(model, splits=("test",), *args, **kwargs):
        calls.append(tuple(splits))
        return original_scores(model, splits, *args, **kwargs)

    monkeypatch.setattr(heldout, "suite_scores", counting)
    original_step = GraceGRPOTrainer.training_step

    def step_then_signal(self, *args, **kwargs):
        loss = original_step(self, *args, **kwargs)
        if self.state.global_step == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return loss

    out = tmp_path / "out"
    monkeypatch.setattr(GraceGRPOTrainer, "training_step", step_then_signal)
    with pytest.raises(SystemExit):
        run_module.main(_argv(tiny_backbone, data_file, out))
    kept = out / "checkpoints" / "base_score.json"
    before = json.loads(kept.read_text())
    assert calls == [("validation", "test")]
    assert set(before["suite"]) == {"rationale", "input"}
    assert set(before["suite"]["input"]) == {"validation", "test"}

    monkeypatch.setattr(GraceGRPOTrainer, "training_step", original_step)
    summary = run_module.run_training(
        *run_module.parse_args(_argv(tiny_backbone, data_file, out, resume_from_checkpoint="last"))
    )
    assert calls == [("validation", "test"), ("test",)]  # the base was not scored again after the resume
    rows = summary["heldout"]
    assert len(rows) == 3 and all(tuple(row) == heldout.REPORT_KEYS for row in rows)
    for row in rows:
        base = before["suite"][row["base_choice"]]["test"][row["task"]]["score"]
        assert row["queries"] == 4 and row["ci_low"] <= row["diff"] <= row["ci_high"]
        assert row["diff"] == pytest.approx(row["trained"] - base, abs=1e-4)
        assert row["base_input"] == before["suite"]["input"]["test"][row["task"]]["score"]
    assert json.loads((out / "train_summary.json").read_text())["heldout"] == rows
    card = (out / "README.md").read_text()
    assert "| GraceSuiteManPagesRetrieval | 4 |" in card and "diff [95% CI]" in card


def _fake_scores(values):
    """suite_scores-shaped scores: ``values[mode][split]`` is one task's per-query list."""
    return {
        mode: {
            split: {"T": {"metric": "ndcg_at_10", "score": sum(v) / len(v), "per_query": dict(enumerate(v))}}
            for split, v in splits.items()
        }
        for mode, splits in values.items()
    }


def test_report_compares_with_the_base_mode_better_on_validation():
    base = _fake_scores(
        {
            "rationale": {"validation": [0.2, 0.4], "test": [0.1, 0.3, 0.5]},
            "input": {"validation": [0.5, 0.5], "test": [0.2, 0.2, 0.2]},
        }
    )
    trained = _fake_scores({"rationale": {"test": [0.3, 0.5, 0.7]}, "input": {"test": [0.2, 0.2, 0.2]}})
    (row,) = heldout.suite_report(base, trained)
    assert row["base_choice"] == "input"  # better on validation, though worse on test
    assert row["diff"] == pytest.approx(0.5 - 0.2)
    assert row["trained_input_diff"] == pytest.approx(0.0) and row["trained_input_ci_low"] == pytest.approx(0.0)


def test_suite_config_fields_are_validated(tmp_path):
    with pytest.raises(ValueError, match="heldout_eval_max_queries=0"):
        GraceConfig(output_dir=str(tmp_path), heldout_eval="suite", heldout_eval_max_queries=0)
    with pytest.raises(ValueError, match="heldout_eval='suites'"):
        GraceConfig(output_dir=str(tmp_path), heldout_eval="suites")
    assert GraceConfig(output_dir=str(tmp_path), heldout_eval="suite").heldout_eval_max_queries is None
