"""The ``grace train`` console: one bar, metrics to the log file, dependency chatter filtered, a summary table."""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

from grace_st.train.console import GraceProgress, progress_fields, quiet_dependency_warnings, summary_table
from grace_st.train.learning_curve import PREFIX


def test_each_log_goes_to_the_file_and_the_bar_shows_reward_and_heldout(tmp_path):
    log = tmp_path / "checkpoints" / "train_log.jsonl"
    progress = GraceProgress(log)
    args = SimpleNamespace(disable_tqdm=True)
    state = SimpleNamespace(is_world_process_zero=True, max_steps=3, global_step=0)
    progress.on_train_begin(args, state, None)
    for step, logs in enumerate([{"loss": 0.5, "reward": -0.2}, {"reward": 0.1, f"{PREFIX}mean": 0.42}], start=1):
        state.global_step = step
        progress.on_log(args, state, None, logs=logs)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines == [{"step": 1, "loss": 0.5, "reward": -0.2}, {"step": 2, "reward": 0.1, f"{PREFIX}mean": 0.42}]
    assert progress.postfix == {"reward": "0.100", "heldout": "0.420"}  # the last of each, kept across logs


def test_other_processes_write_nothing(tmp_path):
    progress = GraceProgress(tmp_path / "log.jsonl")
    state = SimpleNamespace(is_world_process_zero=False, max_steps=3, global_step=1)
    progress.on_log(SimpleNamespace(disable_tqdm=True), state, None, logs={"reward": 1.0})
    assert not (tmp_path / "log.jsonl").exists()


def test_progress_fields_skip_missing_and_non_numbers():
    assert progress_fields({"loss": 1.0}) == {}
    assert progress_fields({"reward": float("nan"), f"{PREFIX}mean": True}) == {}


def test_summary_table_shows_every_heldout_row_with_its_interval():
    row = dict(base_input=0.12, base_rationale=0.23, base_choice="rationale", trained=0.37, diff=0.14)
    rows = [
        {**row, "task": "GraceSuiteWordNetRetrieval", "ci_low": 0.07, "ci_high": 0.22},
        {**row, "task": "GraceSuiteManPagesRetrieval", "base_choice": "input", "ci_low": -0.01, "ci_high": 0.3},
    ]
    summary = {"steps": 40, "wall_seconds": 2132.0, "first_reward": -0.18, "last_reward": 0.44, "heldout": rows}
    table = summary_table(summary).splitlines()
    assert table[0] == "steps 40, wall 35 min 32 s, reward -0.180 -> 0.440"
    assert "GraceSuiteWordNetRetrieval" in table[2] and "0.230" in table[2] and "[0.070, 0.220]" in table[2]
    assert "0.120" in table[3] and "+0.140" in table[3] and "[-0.010, 0.300]" in table[3]  # base: its chosen mode


def test_dependency_deprecations_are_dropped_and_grace_warnings_kept():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_dependency_warnings()
        warnings.warn_explicit("old api", FutureWarning, "x.py", 1, module="transformers.generation.utils")
        warnings.warn_explicit("old api", DeprecationWarning, "x.py", 1, module="mteb")
        warnings.warn_explicit("ours", FutureWarning, "x.py", 1, module="grace_st.rationale_generator")
        warnings.warn_explicit("texts cut", UserWarning, "x.py", 1, module="transformers")
        warnings.warn_explicit("near name", FutureWarning, "x.py", 1, module="transformers_fork")
    assert [str(w.message) for w in seen] == ["ours", "texts cut", "near name"]
