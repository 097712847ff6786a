"""What a rationale costs and what it buys: quality against encode cost for each per-role preset and budget.

GRACE writes a rationale for every text; its peers cut that cost (rationales for queries only, reasoning only where
it helps, a capped budget), but nobody publishes the curve a user needs to choose. This measures it, in one run, on
the held-out suite's **test** tasks (``grace_st.suite_tasks``: WordNet definitions, man pages, stdlib docstrings;
nDCG@10 each, scored by mteb as ``train/heldout.py`` does):

- presets (``grace_st.modeling.role_modes``): ``full`` (the paper's: every text gets a rationale), ``query-only``
  (documents input-only), ``input-only`` (no rationale: one point, no budget), and ``adaptive:N`` (no rationale for
  texts longer than ``N`` tokens);
- rationale budgets (``max_new_tokens``) 16/32/64/128/256 for the presets that generate;
- per run: nDCG@10 per task and their mean, and the encode cost measured during the same mteb evaluation with the
  encoding cache off: texts/s (unique texts encoded / seconds spent encoding them) and rationale tokens generated
  per text.

``N`` is chosen on the suite's **validation** parts, never on test: the validation texts are encoded once with
``full`` (at ``--select-budget``) and once ``input-only``, through an encoding cache in the output folder; every
candidate ``N`` (length quantiles of the validation texts) is then scored from that cache without generating (a
text at most ``N`` tokens long has its ``full`` vector, a longer one its input-only vector). ``--adaptive-rule``
says which wins (:func:`pick_threshold`): ``gain`` (default), the smallest ``N`` keeping ``--keep-gain`` of full's
validation gain over input-only; ``noise``, the smallest ``N`` whose loss against full the validation queries cannot
resolve. Every test run gets paired-bootstrap intervals against input-only and against full at its budget.

Writes into ``--output``: ``cost_quality.json`` (every run, the validation sweep, the Pareto front), rewritten after
each run so a killed run keeps what it finished; ``cost_quality.md`` (the table and which preset to use at which
cost); ``cost_quality.png`` (mean nDCG@10 against seconds per text, one line per preset, the Pareto front marked).

    python benchmarks/cost_quality.py --output /tmp/cq                 # default backbone, ~30-40 min on 2 cores (est.)
    python benchmarks/cost_quality.py --model TINY_BACKBONE --max-queries 4 --validation-queries 4 \\
        --budgets 4 8 --output /tmp/cq-smoke                           # an end-to-end check in a few minutes
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np


PRESETS = ("input-only", "query-only", "adaptive", "full")
"""Measured for each budget in this order, budgets from the smallest up, so a run stopped early has every preset at
the budgets it reached (``input-only`` needs no budget and runs once, first)."""
BUDGETS = (16, 32, 64, 128, 256)
RESAMPLES = 1000
"""Paired-bootstrap resamples for every interval (seeded: a report reproduces to the digit)."""


def load_model(location: str | None, max_input_tokens: int | None) -> Any:
    """A saved GRACE folder, or a causal LM (``None``: the embedded default backbone) as an untrained GRACE model."""
    from grace_st import build_grace_model, load_grace_model
    from grace_st.model_ids import is_grace_folder

    if location is not None and is_grace_folder(Path(location)):
        return load_grace_model(location, device="cpu")
    settings = {} if max_input_tokens is None else {"max_input_tokens": max_input_tokens}
    return build_grace_model(location, device="cpu", **settings)


class Meter:
    """Seconds spent encoding, unique texts encoded and rationale tokens written, read off the module's forward."""

    def __init__(self, model: Any) -> None:
        self.seconds, self.texts, self.tokens = 0.0, 0, 0
        model[0].register_forward_hook(self._count)

    def _count(self, module: Any, args: Any, features: dict[str, Any]) -> None:
        self.tokens += int(features["rationale_mask"].sum())

    def reset(self) -> None:
        self.seconds, self.texts, self.tokens = 0.0, 0, 0


def timed_encoder(model: Any, meter: Meter, **kwargs: Any) -> Any:
    """A :class:`GraceEncoder` whose ``encode_texts`` adds its wall time and new texts to ``meter``."""
    from grace_st import GraceEncoder

    class TimedEncoder(GraceEncoder):
        def encode_texts(self, texts: list[str], prompt: str | None, *args: Any, **more: Any) -> np.ndarray:
            before, start = self.texts_generated, time.perf_counter()
            vectors = super().encode_texts(texts, prompt, *args, **more)
            meter.seconds += time.perf_counter() - start
            meter.texts += self.texts_generated - before
            return vectors

    return TimedEncoder(model, **kwargs)


def score(encoder: Any, split: str, max_queries: int, batch_size: int) -> tuple[dict[str, float], dict[str, float]]:
    """nDCG@10 of each suite task of ``split``, by mteb, and every query's nDCG@10 (keys ``task/query id``)."""
    import mteb

    from grace_st.suite_tasks import suite_tasks

    tasks = suite_tasks(split, max_queries)
    result = mteb.evaluate(
        encoder, tasks, cache=None, show_progress_bar=False, encode_kwargs={"batch_size": batch_size}
    )
    per_query = {
        f"{task.metadata.name}/{qid}": value for task in tasks for qid, value in task.per_query[split].items()
    }
    return {r.task_name: float(r.get_score()) for r in result.task_results}, per_query


def versus(per_query: dict[str, float], reference: dict[str, float]) -> dict[str, float]:
    """Mean paired difference over every query of every task, with its 95% paired-bootstrap interval."""
    from grace_st.paired_bootstrap import paired_bootstrap, paired_scores

    diff, low, high = paired_bootstrap(*paired_scores(per_query, reference), n_resamples=RESAMPLES)
    return {"diff": diff, "ci_low": low, "ci_high": high}


def validation_lengths(model: Any, max_queries: int) -> list[int]:
    """Token lengths of every validation text (queries and corpus), as the module counts them."""
    from grace_st.suite_tasks import suite_tasks

    texts = []
    for task in suite_tasks("validation", max_queries):
        task.load_data()
        split = task.dataset["default"]["validation"]
        texts += list(split["queries"]["text"]) + list(split["corpus"]["text"])
    return model[0].text_token_counts(texts)


def choose_threshold(model: Any, args: argparse.Namespace) -> dict[str, Any]:
    """``N`` of ``adaptive:N``, chosen on validation by ``--adaptive-rule`` (see :func:`pick_threshold`).

    Candidates are the deciles of the validation texts' token lengths, less those no text exceeds (those are
    ``full`` under another name). Each is scored from the validation encoding cache without generating.
    """
    from grace_st import GraceEncoder

    model[0].max_new_tokens = args.select_budget
    cache = str(args.output / "validation_cache.sqlite")
    lengths = validation_lengths(model, args.validation_queries)
    deciles = {int(np.percentile(lengths, q)) for q in range(10, 100, 10)}
    candidates = sorted(n for n in deciles if n < max(lengths))
    sweep: dict[str, float] = {}
    per_query: dict[str, dict[str, float]] = {}
    for preset in ("full", "input-only", *(f"adaptive:{n}" for n in candidates)):
        encoder = GraceEncoder(model, cache=cache, role_modes=preset)
        scores, per_query[preset] = score(encoder, "validation", args.validation_queries, args.batch_size)
        sweep[preset] = statistics.fmean(scores.values())
        print(f"validation  {preset:<14} mean nDCG@10 {sweep[preset]:.4f}", flush=True)
    against_full = {n: versus(per_query[f"adaptive:{n}"], per_query["full"]) for n in candidates}
    share = {n: sum(length <= n for length in lengths) / len(lengths) for n in candidates}
    best, rule = pick_threshold(candidates, against_full, sweep, args.adaptive_rule, args.keep_gain)
    return {
        "threshold": best,
        "budget": args.select_budget,
        "candidates": candidates,
        "validation": sweep,
        "versus_full": {str(n): against_full[n] for n in candidates},
        "rationale_share": {str(n): share[n] for n in candidates},
        "rule": rule,
    }


def pick_threshold(
    candidates: list[int],
    against_full: dict[int, dict[str, float]],
    sweep: dict[str, float],
    rule: str = "gain",
    keep_gain: float = 0.9,
) -> tuple[int, str]:
    """The smallest candidate ``N`` (the fewest rationales written) that passes ``rule`` on validation, and why.

    - ``gain``: its mean keeps at least ``keep_gain`` of what ``full`` gains over ``input-only`` (quality first: a
      loss the user states in advance, whatever the noise);
    - ``noise``: its paired-bootstrap interval against ``full`` reaches 0, a loss the validation queries cannot tell
      from none (cost first: with few or noisy validation queries it accepts real losses).

    If no candidate passes, the best-scoring one (ties: the smaller).
    """
    if rule == "gain":
        floor = sweep["input-only"] + keep_gain * (sweep["full"] - sweep["input-only"])
        passing = [n for n in candidates if sweep[f"adaptive:{n}"] >= floor]
        why = f"the smallest N keeping {keep_gain:.0%} of full's validation gain over input-only"
    elif rule == "noise":
        passing = [n for n in candidates if against_full[n]["ci_high"] >= 0]
        why = "the smallest N whose validation interval against full reaches 0"
    else:
        raise ValueError(f"unknown adaptive rule {rule!r}; use 'gain' or 'noise'")
    if passing:
        return min(passing), why
    best = max(candidates, key=lambda n: (round(sweep[f"adaptive:{n}"], 6), -n))
    return best, f"no N passes ({why}): the best-scoring one"


def measure(model: Any, meter: Meter, preset: str, budget: int | None, args: argparse.Namespace) -> dict[str, Any]:
    """One point of the curve: test nDCG@10 per task and mean, and the encode cost, from one mteb evaluation."""
    if budget is not None:
        model[0].max_new_tokens = budget
    meter.reset()
    encoder = timed_encoder(model, meter, cache=False, role_modes=preset)
    scores, per_query = score(encoder, "test", args.max_queries, args.batch_size)
    row = {
        "preset": preset,
        "budget": budget,
        "mean_ndcg_at_10": statistics.fmean(scores.values()),
        "ndcg_at_10": scores,
        "texts": meter.texts,
        "encode_seconds": meter.seconds,
        "texts_per_second": meter.texts / meter.seconds if meter.seconds else float("nan"),
        "seconds_per_text": meter.seconds / meter.texts if meter.texts else float("nan"),
        "tokens_per_text": meter.tokens / meter.texts if meter.texts else 0.0,
        "per_query": per_query,
    }
    print(
        f"test  {preset:<14} budget {budget or '-':>4}  mean nDCG@10 {row['mean_ndcg_at_10']:.4f}  "
        f"{row['texts_per_second']:.2f} texts/s  {row['tokens_per_text']:.1f} tokens/text",
        flush=True,
    )
    return row


def warm_up(model: Any) -> None:
    """One untimed encode with and without a rationale, so one-time costs (thread pools, kernel selection, prompt
    templates) are not charged to whichever run comes first."""
    from grace_st.suite_tasks import suite_tasks

    task = suite_tasks("validation", 2)[1]
    task.load_data()
    texts = list(task.dataset["default"]["validation"]["corpus"]["text"])
    model[0].role_modes, model[0].max_new_tokens = "full", 8
    model.encode_document(texts, batch_size=2)
    model[0].role_modes = "input-only"
    model.encode_document(texts, batch_size=2)


def pareto_front(rows: list[dict[str, Any]]) -> list[int]:
    """Indices of the runs no other run beats on both cost (seconds per text) and quality, cheapest first."""
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["seconds_per_text"], -rows[i]["mean_ndcg_at_10"]))
    front, best = [], float("-inf")
    for i in order:
        if rows[i]["mean_ndcg_at_10"] > best:
            front.append(i)
            best = rows[i]["mean_ndcg_at_10"]
    return front


def recommendations(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For three cost levels (the cheapest run, the median run's cost, no limit): the best-quality run within it."""
    costs = sorted(row["seconds_per_text"] for row in rows)
    levels = {"cheapest": costs[0], "median cost": statistics.median(costs), "any cost": costs[-1]}
    picks = []
    for name, level in levels.items():
        within = [row for row in rows if row["seconds_per_text"] <= level + 1e-12]
        best = max(within, key=lambda row: row["mean_ndcg_at_10"])
        picks.append({"level": name, "max_seconds_per_text": level, **_label(best)})
    return picks


def _label(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("preset", "budget", "mean_ndcg_at_10", "texts_per_second", "seconds_per_text", "tokens_per_text")
    return {key: row[key] for key in keys}


def markdown(report: dict[str, Any]) -> str:
    """The table (one row per run), the Pareto front and the recommendations, as markdown."""
    rows, front = report["runs"], set(report["pareto_front"])
    tasks = list(rows[0]["ndcg_at_10"]) if rows else []
    short = [name.replace("GraceSuite", "").replace("Retrieval", "") for name in tasks]
    lines = [
        "| preset | budget | " + " | ".join(short) + " | mean nDCG@10 | vs input-only [95% CI] | vs full [95% CI] "
        "| texts/s | tokens/text | Pareto |",
        "|---|---|" + "---|" * len(tasks) + "---|---|---|---|---|---|",
    ]
    for i, row in enumerate(rows):
        cells = [f"{row['ndcg_at_10'][t]:.4f}" for t in tasks]
        lines.append(
            f"| {row['preset']} | {row['budget'] or '-'} | " + " | ".join(cells) + f" | {row['mean_ndcg_at_10']:.4f} "
            f"| {_interval(row, 'vs_input_only')} | {_interval(row, 'vs_full')} "
            f"| {row['texts_per_second']:.2f} | {row['tokens_per_text']:.1f} | {'yes' if i in front else ''} |"
        )
    lines += [
        "",
        "| cost level | s/text at most | best preset | budget | mean nDCG@10 | texts/s |",
        "|---|---|---|---|---|---|",
    ]
    for pick in report["recommendations"]:
        lines.append(
            f"| {pick['level']} | {pick['max_seconds_per_text']:.3f} | {pick['preset']} | {pick['budget'] or '-'} "
            f"| {pick['mean_ndcg_at_10']:.4f} | {pick['texts_per_second']:.2f} |"
        )
    selection = report.get("adaptive_selection")
    if selection:
        n = str(selection["threshold"])
        lines += ["", f"adaptive threshold N = {n} tokens, chosen on validation at budget {selection['budget']} "
                  f"among {selection['candidates']} ({selection['rule']}): it writes rationales for "
                  f"{selection['rationale_share'][n]:.0%} of the validation texts, validation difference against "
                  f"full {_interval(selection['versus_full'], n)}."]  # fmt: skip
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    """Mean nDCG@10 against seconds per text (log scale), one line per preset, the Pareto front marked."""
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    rows = report["runs"]
    figure, axes = plt.subplots(figsize=(7.5, 4.8))
    for preset in dict.fromkeys(row["preset"] for row in rows):
        mine = sorted((row for row in rows if row["preset"] == preset), key=lambda row: row["budget"] or 0)
        x, y = [row["seconds_per_text"] for row in mine], [row["mean_ndcg_at_10"] for row in mine]
        axes.plot(x, y, marker="o", label=preset)
        for row in mine:
            if row["budget"] is not None:
                axes.annotate(str(row["budget"]), (row["seconds_per_text"], row["mean_ndcg_at_10"]), fontsize=7,
                              textcoords="offset points", xytext=(3, 3))  # fmt: skip
    front = [rows[i] for i in report["pareto_front"]]
    axes.step([r["seconds_per_text"] for r in front], [r["mean_ndcg_at_10"] for r in front], where="post",
              color="black", linewidth=1, linestyle="--", label="Pareto front")  # fmt: skip
    axes.scatter([r["seconds_per_text"] for r in front], [r["mean_ndcg_at_10"] for r in front], s=120,
                 facecolors="none", edgecolors="black", zorder=3)  # fmt: skip
    axes.set_xscale("log")
    axes.set_xlabel("encode cost: seconds per text (cache off; log scale)")
    axes.set_ylabel("mean nDCG@10, held-out suite test tasks")
    axes.set_title("GRACE cost and quality by preset (labels: rationale budget)")
    axes.legend(fontsize=8)
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def add_intervals(rows: list[dict[str, Any]]) -> None:
    """Each run's mean per-query difference, with its paired interval, against ``input-only`` (what the rationale
    buys) and against ``full`` at the same budget (what a cheaper preset gives up), where those runs exist."""
    baseline = next((row for row in rows if row["preset"] == "input-only"), None)
    full = {row["budget"]: row for row in rows if row["preset"] == "full"}
    for row in rows:
        if baseline is not None and row is not baseline:
            row["vs_input_only"] = versus(row["per_query"], baseline["per_query"])
        if row["budget"] in full and row is not full[row["budget"]]:
            row["vs_full"] = versus(row["per_query"], full[row["budget"]]["per_query"])


def _interval(row: dict[str, Any], key: str) -> str:
    if key not in row:
        return "-"
    value = row[key]
    return f"{value['diff']:+.3f} [{value['ci_low']:+.3f}, {value['ci_high']:+.3f}]"


def write_report(report: dict[str, Any], output: Path) -> None:
    """Fill in the intervals, Pareto front and recommendations, then write the JSON, markdown and PNG."""
    rows = report["runs"]
    add_intervals(rows)
    report["pareto_front"] = pareto_front(rows) if rows else []
    report["recommendations"] = recommendations(rows) if rows else []
    (output / "cost_quality.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if rows:
        (output / "cost_quality.md").write_text(markdown(report), encoding="utf-8")
        plot(report, output / "cost_quality.png")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="GRACE folder or causal LM (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--output", type=Path, required=True, help="folder for the JSON, markdown and PNG")
    parser.add_argument("--max-queries", type=int, default=30, help="test queries per suite task (default: 30)")
    parser.add_argument("--validation-queries", type=int, default=30, help="validation queries per task (default: 30)")
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS), help="rationale budgets to measure")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS, help="presets to measure")
    parser.add_argument("--select-budget", type=int, default=64, help="budget at which adaptive's N is chosen")
    parser.add_argument("--threshold", type=int, help="use this adaptive N instead of choosing it on validation")
    parser.add_argument("--adaptive-rule", choices=("gain", "noise"), default="gain", help="how N is chosen")
    parser.add_argument("--keep-gain", type=float, default=0.9, help="the gain rule's share of full's gain")
    parser.add_argument("--batch-size", type=int, default=64, help="texts per generation batch (default: 64)")
    parser.add_argument("--max-input-tokens", type=int, help="cut texts to this many tokens (default: the model's)")
    args = parser.parse_args(argv)
    for name in ("max_queries", "validation_queries", "select_budget", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer")
    if not 0 < args.keep_gain <= 1:
        parser.error("--keep-gain must be in (0, 1]")
    if any(budget < 1 for budget in args.budgets):
        parser.error("--budgets must be positive integers")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    model = load_model(args.model, args.max_input_tokens)
    report: dict[str, Any] = {"model": args.model or "embedded SmolLM2-135M-Instruct", "settings": {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "runs": []}  # fmt: skip
    start = time.perf_counter()
    adaptive = None
    if "adaptive" in args.presets:
        if args.threshold is None:
            report["adaptive_selection"] = choose_threshold(model, args)
            adaptive = f"adaptive:{report['adaptive_selection']['threshold']}"
        else:
            adaptive = f"adaptive:{args.threshold}"
    report["selection_seconds"] = time.perf_counter() - start
    warm_up(model)
    meter = Meter(model)
    plan = [("input-only", None)] if "input-only" in args.presets else []
    plan += [(p, b) for b in sorted(args.budgets) for p in args.presets if p != "input-only"]
    for preset, budget in plan:
        name = adaptive if preset == "adaptive" else preset
        report["runs"].append(measure(model, meter, name, budget, args))
        report["total_seconds"] = time.perf_counter() - start
        write_report(report, args.output)
    print(markdown(report) if report["runs"] else "no runs")
    return report


if __name__ == "__main__":
    main()
