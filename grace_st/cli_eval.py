"""``grace eval MODEL --tasks ... | --benchmark ...``: score a GRACE model with mteb, print a table, save results.

Task names are mteb's own or the project's offline tasks (``grace_st.eval_tasks.OFFLINE_TASKS``). mteb tasks
download their data from the Hub; with no network they fail, and the error says which offline tasks to use instead.
Encodings go through the on-disk cache, so re-running (or another task over the same texts) does not generate again.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any


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
    which.add_argument("--benchmark", metavar="NAME", help='an mteb benchmark, e.g. "MTEB(eng, v1)"')
    evaluate.add_argument("--output", type=Path, default=Path("results"), help="results folder (default: results)")
    evaluate.add_argument("--update-card", action="store_true", help="write the scores into MODEL/README.md")
    evaluate.add_argument("--batch-size", type=int, default=16, help="texts per generation batch (default: 16)")
    evaluate.add_argument("--span", choices=["input_and_rationale", "rationale", "input"], help="override the span")
    evaluate.add_argument("--max-new-tokens", type=int, help="override the rationale length cap")
    evaluate.add_argument("--no-instructions", action="store_true", help="only query/document prompts, no per-task")
    evaluate.add_argument("--no-cache", action="store_true", help="do not read or write the encoding cache")


def resolve_tasks(names: list[str] | None, benchmark: str | None) -> list[Any]:
    """Task objects for ``names`` (offline tasks first, then mteb's) or a benchmark; unknown names suggest others."""
    import mteb

    from .eval_tasks import OFFLINE_TASKS

    if benchmark is not None:
        try:
            return list(mteb.get_benchmark(benchmark).tasks)
        except (KeyError, ValueError) as exc:
            known = [b.name for b in mteb.get_benchmarks()]
            close = difflib.get_close_matches(benchmark, known, n=3, cutoff=0.4)
            raise ValueError(f"Unknown benchmark {benchmark!r}. Did you mean {close}?") from exc
    tasks = []
    for name in names or []:
        if name in OFFLINE_TASKS:
            tasks.append(OFFLINE_TASKS[name]())
            continue
        try:
            tasks.append(mteb.get_task(name))
        except (KeyError, ValueError) as exc:
            known = list(OFFLINE_TASKS) + [task.metadata.name for task in mteb.get_tasks(exclude_superseded=False)]
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            raise ValueError(
                f"Unknown task {name!r}. Did you mean {close}? Offline tasks: {sorted(OFFLINE_TASKS)}."
            ) from exc
    return tasks


def _encoder(args: argparse.Namespace) -> Any:
    from .loading import load_grace_model
    from .mteb_encoder import GraceEncoder

    model = load_grace_model(args.model)
    generator = model[0]
    if args.span is not None:
        generator.span = args.span
    if args.max_new_tokens is not None:
        generator.max_new_tokens = args.max_new_tokens
    name = args.model if args.model and "/" in str(args.model) and not Path(args.model).exists() else None
    model.model_card_data.model_name = name or f"local/{Path(args.model or 'grace-default').name}"
    return GraceEncoder(model, use_instructions=not args.no_instructions, cache=not args.no_cache)


def run(args: argparse.Namespace) -> None:
    import mteb
    from mteb.cache import ResultCache

    tasks = resolve_tasks(args.tasks, args.benchmark)
    encoder = _encoder(args)
    try:
        result = mteb.evaluate(
            encoder,
            tasks,
            cache=ResultCache(cache_path=args.output),
            overwrite_strategy="always",
            encode_kwargs={"batch_size": args.batch_size},
            show_progress_bar=False,
        )
    except (OSError, ConnectionError) as exc:
        raise ValueError(
            f"A task's data could not be loaded ({type(exc).__name__}: {exc}). mteb downloads task data from the "
            "Hub; offline, use the offline tasks: GraceWordNetDefinitionRetrieval GraceWordNetSensePairClassification "
            "GraceWordNetLexnameClustering."
        ) from exc
    rows = [
        (r.task_name, tasks_by_name(tasks)[r.task_name].metadata.main_score, r.get_score())
        for r in result.task_results
    ]
    width = max(len(row[0]) for row in rows)
    print(f"{'task':<{width}}  {'metric':<12}  score")
    for name, metric, score in rows:
        print(f"{name:<{width}}  {metric:<12}  {score:.4f}")
    summary = {name: {"metric": metric, "score": score} for name, metric, score in rows}
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "grace_eval_summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(
        f"grace: {encoder.texts_generated} texts encoded, the rest from the cache; results in {args.output}",
        file=sys.stderr,
    )
    if args.update_card:
        _update_card(args, result, tasks)


def tasks_by_name(tasks: list[Any]) -> dict[str, Any]:
    return {task.metadata.name: task for task in tasks}


def _update_card(args: argparse.Namespace, result: Any, tasks: list[Any]) -> None:
    from .card_results import eval_results_from_mteb, update_card

    if args.model is None or not Path(args.model).is_dir():
        raise ValueError("--update-card needs MODEL to be a local GRACE folder (its README.md is rewritten).")
    path = update_card(args.model, eval_results_from_mteb(result.task_results, tasks_by_name(tasks)))
    print(f"grace: wrote {len(tasks)} task scores into {path} (model-index)", file=sys.stderr)
