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
        "per_query": {f"task/q{i}": quality + (0.2 if i % 2 else -0.2) for i in range(20)},
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


def test_each_run_gets_paired_intervals_against_input_only_and_full_at_its_budget(cost_quality):
    runs = [dict(run, per_query=dict(run["per_query"])) for run in RUNS]
    runs[1]["per_query"]["task/q0"] += 2.0  # one query of query-only 16 much better: the mean moves by 0.1
    cost_quality.add_intervals(runs)
    assert "vs_input_only" not in runs[0] and "vs_full" not in runs[0] and "vs_full" not in runs[3]
    assert runs[3]["vs_input_only"] == pytest.approx({"diff": 0.10, "ci_low": 0.10, "ci_high": 0.10})
    gain = runs[1]["vs_full"]
    assert gain["diff"] == pytest.approx(-0.05 + 0.1) and gain["ci_low"] < gain["diff"] < gain["ci_high"]
    assert runs[2]["vs_full"]["diff"] == pytest.approx(0.52 - 0.58), "query-only 64 against full 64"
    assert "vs_full" not in runs[4], "full is not compared with itself"


def test_adaptive_rules_take_the_smallest_passing_threshold_else_the_best(cost_quality):
    sweep = {"full": 0.50, "input-only": 0.30, "adaptive:4": 0.30, "adaptive:9": 0.47, "adaptive:20": 0.49}
    noisy = {"ci_low": -0.1, "ci_high": 0.02}
    lost = {"ci_low": -0.3, "ci_high": -0.1}
    pick = cost_quality.pick_threshold
    assert pick([4, 9, 20], {4: lost, 9: noisy, 20: noisy}, sweep, "noise")[0] == 9
    assert pick([4, 9, 20], {4: lost, 9: lost, 20: lost}, sweep, "noise")[0] == 20, "none passes: the best"
    assert pick([4, 9, 20], {}, sweep, "gain", keep_gain=0.9)[0] == 20, "9 keeps 85% of the 0.20 gain, 20 keeps 95%"
    assert pick([4, 9, 20], {}, sweep, "gain", keep_gain=0.8)[0] == 9
    with pytest.raises(ValueError, match="unknown adaptive rule"):
        pick([4], {}, sweep, "cheapest")


def test_report_files_are_written(cost_quality, tmp_path):
    interval = {"diff": -0.02, "ci_low": -0.05, "ci_high": 0.01}
    selection = {"threshold": 40, "budget": 64, "candidates": [20, 40], "rule": "the cheapest N ...",
                 "rationale_share": {"40": 0.7}, "versus_full": {"40": interval}}  # fmt: skip
    report = {"runs": [dict(run) for run in RUNS], "adaptive_selection": selection}
    cost_quality.write_report(report, tmp_path)
    table = (tmp_path / "cost_quality.md").read_text()
    assert "| full | 16 | 0.6000 | 0.6000 | 0.6000 | +0.100 [+0.100, +0.100] | - |" in table
    assert "adaptive threshold N = 40 tokens" in table and "for 70% of the validation texts" in table
    assert "against full -0.020 [-0.050, +0.010]" in table
    assert (tmp_path / "cost_quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "cost_quality.json").is_file()
