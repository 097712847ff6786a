"""``grace eval MODEL --tasks ... | --benchmark ...``: score a GRACE model with mteb, print a table, save results.

Task names are mteb's own or the project's offline tasks (``grace_st.eval_tasks.OFFLINE_TASKS`` and the held-out
suite's ``grace_st.suite_tasks.SUITE_TASKS``); ``--benchmark grace-heldout`` is the suite (``--split`` picks its
validation or test part). mteb tasks download their data from the Hub; with no network they fail, and the error says
which offline tasks to use instead. Encodings go through the on-disk cache, so re-running (or another task over the
same texts) does not generate again.

``--baseline OTHER`` scores a second model on the same tasks and prints, per task, the difference (model minus
baseline) with a paired bootstrap 95% interval over queries (the suite's tasks keep mteb's per-query scores).
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any

from .errors import GraceUserError


def add_parser(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "eval",
        help="score a GRACE model on mteb tasks (mteb's or the offline WordNet tasks); print and save the results",
        description="Evaluate a GRACE model with mteb. Offline tasks: GraceWordNetDefinitionRetrieval, "
        "GraceWordNetSensePairClassification, GraceWordNetLexnameClustering.",
    )
    evaluate.add_argument(
        "model",
        nargs="?",
        metavar="MODEL",
        help="GRACE folder or Hub id (default: the embedded SmolLM2 as an untrained GRACE model)",
    )
    which = evaluate.add_mutually_exclusive_group(required=True)
    which.add_argument("--tasks", nargs="+", metavar="TASK", help="mteb task names or offline task names")
    which.add_argument(
        "--benchmark", metavar="NAME", help='"grace-heldout" (the offline held-out suite) or an mteb benchmark'
    )
    evaluate.add_argument(
        "--split", choices=["validation", "test"], default="test", help="held-out suite part (default: test)"
    )
    evaluate.add_argument("--max-queries", type=int, help="cap the queries of each suite task (smoke runs)")
    evaluate.add_argument(
        "--baseline", metavar="OTHER_MODEL", help="also score this model; print model minus baseline with a 95%% CI"
    )
    evaluate.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default: 1000)")
    evaluate.add_argument("--output", type=Path, default=Path("results"), help="results folder (default: results)")
    evaluate.add_argument("--update-card", action="store_true", help="write the scores into MODEL/README.md")
    evaluate.add_argument("--batch-size", type=int, default=16, help="texts per generation batch (default: 16)")
    evaluate.add_argument("--span", choices=["input_and_rationale", "rationale", "input"], help="override the span")
    evaluate.add_argument("--max-new-tokens", type=int, help="override the rationale length cap")
    evaluate.add_argument(
        "--preset",
        metavar="NAME",
        help="per-role modes: full, query-only (documents input-only), input-only, adaptive:N (no rationale for "
        "texts over N tokens); results are filed under a revision naming it",
    )
    evaluate.add_argument("--no-instructions", action="store_true", help="only query/document prompts, no per-task")
    evaluate.add_argument("--no-cache", action="store_true", help="do not read or write the encoding cache")
    from .cli import add_devices, add_trust_remote_code

    add_devices(evaluate)
    add_trust_remote_code(evaluate)


def resolve_tasks(
    names: list[str] | None, benchmark: str | None, split: str = "test", max_queries: int | None = None
) -> list[Any]:
    """Task objects for ``names`` (offline tasks first, then mteb's) or a benchmark; unknown names suggest others.

    ``split`` and ``max_queries`` apply to the held-out suite's tasks (``grace-heldout`` and ``GraceSuite*``).
    """
    import mteb

    from .eval_tasks import OFFLINE_TASKS
    from .suite_tasks import BENCHMARK, SUITE_TASKS, suite_tasks

    if benchmark == BENCHMARK:
        return list(suite_tasks(split, max_queries))
    if benchmark is not None:
        try:
            return list(mteb.get_benchmark(benchmark).tasks)
        except (KeyError, ValueError) as exc:
            known = [b.name for b in mteb.get_benchmarks()]
            close = difflib.get_close_matches(benchmark, known, n=3, cutoff=0.4)
            raise GraceUserError(f"Unknown benchmark {benchmark!r}. Did you mean {close}?") from exc
    tasks = []
    for name in names or []:
        if name in SUITE_TASKS:
            tasks.append(SUITE_TASKS[name](split=split, max_queries=max_queries))
            continue
        if name in OFFLINE_TASKS:
            tasks.append(OFFLINE_TASKS[name]())
            continue
        try:
            tasks.append(mteb.get_task(name))
        except (KeyError, ValueError) as exc:
            known = (
                list(OFFLINE_TASKS)
                + list(SUITE_TASKS)
                + [task.metadata.name for task in mteb.get_tasks(exclude_superseded=False)]
            )
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            raise GraceUserError(
                f"Unknown task {name!r}. Did you mean {close}? Offline tasks: {sorted(OFFLINE_TASKS)} and "
                f"{sorted(SUITE_TASKS)} (or --benchmark {BENCHMARK})."
            ) from exc
    return tasks


def _encoder(args: argparse.Namespace, location: str | None) -> Any:
    from .loading import load_grace_model
    from .mteb_encoder import GraceEncoder

    model = load_grace_model(location, trust_remote_code=args.trust_remote_code)
    generator = model[0]
    if args.span is not None:
        if generator.role_modes is not None and args.preset is None:
            raise GraceUserError(
                f"{location} has per-role modes ({generator.role_modes.label()!r}), which choose each role's span, so "
                "--span would change nothing. Use --preset instead (e.g. --preset input-only for no rationale)."
            )
        generator.span = args.span
    if args.max_new_tokens is not None:
        generator.max_new_tokens = args.max_new_tokens
    if args.preset is not None:
        generator.role_modes = args.preset
    name = location if location and "/" in str(location) and not Path(location).exists() else None
    model.model_card_data.model_name = name or f"local/{Path(location or 'grace-default').name}"
    options = dict(use_instructions=not args.no_instructions, cache=not args.no_cache, devices=args.devices)
    return GraceEncoder(model, **options)


def run(args: argparse.Namespace) -> None:
    if args.max_queries is not None and args.max_queries < 1:
        raise GraceUserError(f"--max-queries must be a positive integer, got {args.max_queries}.")
    if args.preset is not None:  # a misspelt preset fails before any model is loaded
        from .modeling.role_modes import preset_modes

        preset_modes(args.preset)
    tasks = resolve_tasks(args.tasks, args.benchmark, args.split, args.max_queries)
    encoder = _encoder(args, args.model)
    result = _evaluate(encoder, tasks, args)
    rows = [
        (r.task_name, tasks_by_name(tasks)[r.task_name].metadata.main_score, r.get_score())
        for r in result.task_results
    ]
    summary: dict[str, Any] = {name: {"metric": metric, "score": score} for name, metric, score in rows}
    if args.baseline is None:
        width = max(len(row[0]) for row in rows)
        print(f"{'task':<{width}}  {'metric':<12}  score")
        for name, metric, score in rows:
            print(f"{name:<{width}}  {metric:<12}  {score:.4f}")
    else:
        baseline_tasks = resolve_tasks(args.tasks, args.benchmark, args.split, args.max_queries)
        baseline = _encoder(args, args.baseline)
        baseline_result = _evaluate(baseline, baseline_tasks, args)
        summary = compare(tasks, result, baseline_tasks, baseline_result, args.resamples)
        print(format_comparison(summary))
        encoder.texts_generated += baseline.texts_generated
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "grace_eval_summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(
        f"grace: {encoder.texts_generated} texts encoded, the rest from the cache; results in {args.output}",
        file=sys.stderr,
    )
    if args.update_card:
        _update_card(args, result, tasks)


def _evaluate(encoder: Any, tasks: list[Any], args: argparse.Namespace) -> Any:
    import mteb
    from mteb.cache import ResultCache

    try:
        return mteb.evaluate(
            encoder,
            tasks,
            cache=ResultCache(cache_path=args.output),
            overwrite_strategy="always",
            encode_kwargs={"batch_size": args.batch_size},
            show_progress_bar=False,
        )
    except (OSError, ConnectionError) as exc:
        raise GraceUserError(
            f"A task's data could not be loaded ({type(exc).__name__}: {exc}). mteb downloads task data from the "
            "Hub; offline, use --benchmark grace-heldout or the offline tasks: GraceWordNetDefinitionRetrieval "
            "GraceWordNetSensePairClassification GraceWordNetLexnameClustering."
        ) from exc


def compare(
    tasks: list[Any], result: Any, baseline_tasks: list[Any], baseline_result: Any, resamples: int = 1000
) -> dict[str, dict[str, Any]]:
    """Per task: metric, baseline, model, diff and (where per-query scores exist) a paired bootstrap 95% CI."""
    from .paired_bootstrap import paired_bootstrap, paired_scores

    ours, theirs = tasks_by_name(tasks), tasks_by_name(baseline_tasks)
    base_scores = {r.task_name: r.get_score() for r in baseline_result.task_results}
    table: dict[str, dict[str, Any]] = {}
    for r in result.task_results:
        task, score, base = ours[r.task_name], r.get_score(), base_scores[r.task_name]
        row: dict[str, Any] = {"metric": task.metadata.main_score, "baseline": base, "model": score}
        row |= {"diff": score - base, "ci_low": None, "ci_high": None}
        split = getattr(task, "split", None)
        per_query = getattr(task, "per_query", {}).get(split)
        base_per_query = getattr(theirs[r.task_name], "per_query", {}).get(split)
        if per_query and base_per_query:
            diff, row["ci_low"], row["ci_high"] = paired_bootstrap(
                *paired_scores(per_query, base_per_query), n_resamples=resamples
            )
            row |= {"diff": diff, "queries": len(per_query)}
        table[r.task_name] = row
    return table


def format_comparison(table: dict[str, dict[str, Any]]) -> str:
    """The comparison as a fixed-width text table (intervals shown as "-" where a task has no per-query scores)."""
    width = max(len(name) for name in table)
    lines = [f"{'task':<{width}}  {'metric':<12}  baseline  model    diff     ci_low   ci_high"]
    for name, row in table.items():
        ci = [f"{row[k]:+.4f}" if row[k] is not None else "      -" for k in ("ci_low", "ci_high")]
        lines.append(
            f"{name:<{width}}  {row['metric']:<12}  {row['baseline']:.4f}    {row['model']:.4f}   "
            f"{row['diff']:+.4f}  {ci[0]}  {ci[1]}"
        )
    return "\n".join(lines)


def tasks_by_name(tasks: list[Any]) -> dict[str, Any]:
    return {task.metadata.name: task for task in tasks}


def _update_card(args: argparse.Namespace, result: Any, tasks: list[Any]) -> None:
    from .card_results import eval_results_from_mteb, update_card

    if args.model is None or not Path(args.model).is_dir():
        raise GraceUserError("--update-card needs MODEL to be a local GRACE folder (its README.md is rewritten).")
    path = update_card(args.model, eval_results_from_mteb(result.task_results, tasks_by_name(tasks)))
    print(f"grace: wrote {len(tasks)} task scores into {path} (model-index)", file=sys.stderr)
