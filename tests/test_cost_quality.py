"""The cost/quality benchmark's report: the Pareto front, the recommendations, the table and the plot.

The measuring itself runs a model (see ``benchmarks/cost_quality.py``; checked end to end on the tiny model by hand);
these are its pure parts, on made-up runs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def cost_quality():
    path = Path(__file__).parents[1] / "benchmarks" / "cost_quality.py"
    spec = importlib.util.spec_from_file_location("cost_quality", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(preset, budget, quality, seconds):
    return {
        "preset": preset,
        "budget": budget,
        "mean_ndcg_at_10": quality,
        "ndcg_at_10": {"GraceSuiteWordNetRetrieval": quality, "GraceSuitePydocRetrieval": quality},
        "texts_per_second": 1 / seconds,
        "seconds_per_text": seconds,
        "tokens_per_text": 0.0 if budget is None else budget / 2,
    }


RUNS = [
    _run("input-only", None, 0.50, 0.01),
    _run("query-only", 16, 0.55, 0.05),
    _run("query-only", 64, 0.52, 0.20),  # dominated: dearer and worse than query-only 16
    _run("full", 16, 0.60, 0.30),
    _run("full", 64, 0.58, 0.90),  # dominated
]


def test_pareto_front_keeps_only_undominated_runs_cheapest_first(cost_quality):
    assert cost_quality.pareto_front(RUNS) == [0, 1, 3]


def test_recommendations_pick_the_best_quality_within_each_cost(cost_quality):
    picks = {pick["level"]: (pick["preset"], pick["budget"]) for pick in cost_quality.recommendations(RUNS)}
    assert picks == {"cheapest": ("input-only", None), "median cost": ("query-only", 16), "any cost": ("full", 16)}


def test_report_files_are_written(cost_quality, tmp_path):
    report = {"runs": RUNS, "adaptive_selection": {"threshold": 40, "budget": 64, "candidates": [20, 40]}}
    cost_quality.write_report(report, tmp_path)
    table = (tmp_path / "cost_quality.md").read_text()
    assert "| full | 16 | 0.6000 | 0.6000 | 0.6000 |" in table and "adaptive threshold N = 40 tokens" in table
    assert (tmp_path / "cost_quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "cost_quality.json").is_file()
