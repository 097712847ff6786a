"""The held-out suite as mteb tasks, per-query scores, the paired bootstrap and ``grace eval --baseline``."""

from __future__ import annotations

import json

import mteb
import numpy as np
import pytest
from suite_markers import needs_man_pages

from grace_st import save_grace_model
from grace_st.mteb_encoder import GraceEncoder
from grace_st.paired_bootstrap import paired_bootstrap, paired_scores
from grace_st.suite_tasks import SUITE_TASKS, SuitePydocRetrieval, suite_tasks


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRACE_CACHE", str(tmp_path / "grace-cache"))


def test_bootstrap_of_a_constant_difference_is_that_value_with_zero_width():
    rng = np.random.default_rng(1)
    base = rng.uniform(0, 1, size=200)
    assert paired_bootstrap(base + 0.25, base) == pytest.approx((0.25, 0.25, 0.25))


def test_bootstrap_of_a_symmetric_difference_contains_zero_and_is_reproducible():
    base = np.linspace(0, 1, 101)
    diff = np.tile([0.3, -0.3], 50)
    mean, low, high = paired_bootstrap(base[:100] + diff, base[:100], n_resamples=2000, seed=3)
    assert mean == pytest.approx(0.0) and low < 0 < high
    assert (low, high) == pytest.approx((-high, high), abs=0.02)  # symmetric around 0
    # the interval of a mean of +-0.3 coin flips over 100 queries: about +-1.96 * 0.3 / 10
    assert high == pytest.approx(1.96 * 0.3 / 10, rel=0.15)
    assert paired_bootstrap(base[:100] + diff, base[:100], n_resamples=2000, seed=3) == (mean, low, high)


def test_bootstrap_rejects_unpaired_scores():
    with pytest.raises(ValueError, match="same queries"):
        paired_bootstrap([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="different queries"):
        paired_scores({"q1": 1.0}, {"q2": 1.0})
    assert paired_scores({"q2": 2.0, "q1": 1.0}, {"q1": 0.5, "q2": 0.0}) == ([1.0, 2.0], [0.5, 0.0])


@needs_man_pages
def test_suite_tasks_evaluate_a_tiny_model_and_per_query_mean_is_mtebs_score(grace_tiny, tmp_path):
    encoder = GraceEncoder(grace_tiny, cache=str(tmp_path / "enc.sqlite"))
    tasks = suite_tasks("validation", max_queries=6)
    result = mteb.evaluate(encoder, tasks, cache=None, show_progress_bar=False)
    assert {r.task_name for r in result.task_results} == set(SUITE_TASKS)
    for task_result in result.task_results:
        task = next(t for t in tasks if t.metadata.name == task_result.task_name)
        assert list(task_result.scores) == ["validation"]
        per_query = task.per_query["validation"]
        assert len(per_query) == 6 and all(0 <= v <= 1 for v in per_query.values())
        assert np.mean(list(per_query.values())) == pytest.approx(task_result.get_score(), abs=5e-6)


def test_splits_give_different_queries_and_bad_arguments_are_named():
    task = SuitePydocRetrieval(split="test", max_queries=4)
    task.load_data()
    validation = SuitePydocRetrieval(split="validation", max_queries=4)
    validation.load_data()
    assert set(task.query_texts.values()).isdisjoint(validation.query_texts.values())
    corpus = task.dataset["default"]["test"]["corpus"]
    assert len(corpus) == 4  # the corpus is the chosen queries' documents
    with pytest.raises(ValueError, match="split='train'"):
        SuitePydocRetrieval(split="train")
    with pytest.raises(ValueError, match="max_queries"):
        SuitePydocRetrieval(max_queries=0)


def test_grace_eval_with_a_baseline_prints_diffs_and_intervals(build_tiny, tmp_path, capsys):
    from grace_st.cli import main as grace_main

    model = save_grace_model(build_tiny(), tmp_path / "model")
    other = save_grace_model(build_tiny(span="input"), tmp_path / "base")
    common = ["--tasks", "GraceSuitePydocRetrieval", "--split", "validation", "--max-queries", "5"]
    common += ["--output", str(tmp_path / "r"), "--no-cache"]
    assert grace_main(["eval", str(model), *common, "--baseline", str(model)]) == 0
    same = json.loads((tmp_path / "r" / "grace_eval_summary.json").read_text())["GraceSuitePydocRetrieval"]
    assert same["diff"] == 0 and same["ci_low"] == 0 and same["ci_high"] == 0 and same["queries"] == 5
    capsys.readouterr()
    assert grace_main(["eval", str(model), *common, "--baseline", str(other)]) == 0
    out = capsys.readouterr().out
    assert "baseline" in out.splitlines()[0] and "ci_low" in out.splitlines()[0]
    row = json.loads((tmp_path / "r" / "grace_eval_summary.json").read_text())["GraceSuitePydocRetrieval"]
    assert row["diff"] == pytest.approx(row["model"] - row["baseline"], abs=1e-4)
    assert row["ci_low"] <= row["diff"] <= row["ci_high"]
