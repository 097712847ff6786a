"""A wall-clock budget ends training at a step boundary and counts a resumed run's earlier training time."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from test_training import make_trainer, tiny_args, triples

from grace_st.train.config import GraceConfig
from grace_st.train.time_budget import TimeBudget


def test_a_spent_budget_stops_after_the_current_step(ending_backbone, tmp_path):
    budget = TimeBudget(minutes=1e-6)
    trainer = make_trainer(ending_backbone, tiny_args(tmp_path, max_steps=4), triples(8), callbacks=[budget])
    trainer.train()
    assert budget.exhausted and trainer.state.global_step == 1


def test_no_budget_runs_every_step(ending_backbone, tmp_path):
    budget = TimeBudget(minutes=None)
    trainer = make_trainer(ending_backbone, tiny_args(tmp_path, max_steps=2), triples(8), callbacks=[budget])
    trainer.train()
    assert not budget.exhausted and trainer.state.global_step == 2


def test_a_resumed_run_counts_the_time_already_trained():
    budget = TimeBudget(minutes=1.0)
    state = SimpleNamespace(log_history=[{"step_time": 50.0}, {"loss": 1.0}, {"step_time": 15.0}])
    budget.on_train_begin(None, state, None)
    assert 65.0 <= budget.spent() < 66.0
    control = SimpleNamespace(should_save=False, should_training_stop=False)
    assert budget.on_step_end(None, state, control).should_training_stop


@pytest.mark.parametrize("value", [0, -5, float("inf")])
def test_bad_budget_names_the_value(tmp_path, value):
    with pytest.raises(ValueError, match="max_train_minutes"):
        GraceConfig(output_dir=str(tmp_path), bf16=False, max_train_minutes=value)
