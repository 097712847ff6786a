"""Held-out scores before and after training, and example rationales for the model card.

``wordnet``: retrieval of WordNet definitions from example sentences, on the held-out split of the same source the
quickstart trains on (words never seen in training; see ``grace_st.wordnet``), scored with mteb as nDCG@10.

``suite``: the held-out suite (``grace_st.suite_tasks``: WordNet, man pages, stdlib docstrings; nDCG@10 each).
Before training, the untrained base is scored on validation and test in two modes: ``rationale`` (the run's own
span and generation settings) and ``input`` (span ``"input"``: no rationale, one forward pass). After training the
trained model is scored on test in both modes. :func:`suite_report` then compares, per test task, the trained model
with **the base mode that scored higher on that task's validation part** (ties go to ``input``, the cheaper one):
choosing per task on validation makes the base as strong as the validation data can tell, without looking at test.
The interval is a paired bootstrap over the test queries (``grace_st.paired_bootstrap``). Encodings go through the
on-disk encoding cache, so scoring the same base again (a rerun, another recipe on the same backbone) is free.
"""

from __future__ import annotations

from typing import Any

from sentence_transformers import SentenceTransformer

from .config import GraceConfig


MODES = ("rationale", "input")
REPORT_KEYS = (
    "task",
    "metric",
    "queries",
    "base_input",
    "base_rationale",
    "base_choice",
    "trained",
    "diff",
    "ci_low",
    "ci_high",
    "trained_input",
    "trained_input_diff",
    "trained_input_ci_low",
    "trained_input_ci_high",
)
"""The keys of each row of ``train_summary.json``'s ``heldout`` list (one row per test task)."""


def heldout_score(model: SentenceTransformer, args: GraceConfig, stage: str = "trained") -> dict[str, Any]:
    """``{"task", "metric", "score"}`` of ``model`` on ``args.heldout_eval``, evaluated with mteb (no result cache).

    For the suite, ``stage="base"`` also scores the validation parts (to choose the base mode), and the result
    carries every score under ``"suite"``; ``"score"`` is then the mean test score over tasks (the base: of the mode
    chosen per task on validation; the trained model: its own mode).
    """
    if args.heldout_eval == "suite":
        splits = ("validation", "test") if stage == "base" else ("test",)
        scores = suite_scores(model, splits, args.heldout_eval_max_queries, args.heldout_eval_batch_size)
        names = list(scores["rationale"]["test"])
        modes = {name: base_choice(scores, name) if stage == "base" else "rationale" for name in names}
        mean = sum(scores[modes[name]]["test"][name]["score"] for name in names) / len(names)
        return {"task": "grace-heldout", "metric": "mean ndcg_at_10", "score": mean, "suite": scores}
    import mteb

    from ..eval_tasks import WordNetDefinitionRetrieval

    task = WordNetDefinitionRetrieval(n_queries=args.heldout_eval_queries)
    result = mteb.evaluate(model, [task], cache=None, show_progress_bar=False)
    task_result = result.task_results[0]
    return {"task": task.metadata.name, "metric": task.metadata.main_score, "score": float(task_result.get_score())}


def heldout_examples(model: SentenceTransformer, args: GraceConfig, count: int) -> list[dict[str, str]]:
    """A few held-out example sentences with the rationale the model writes for them (shown in the card)."""
    if count < 1:
        return []
    from ..rationales import encode_with_rationales
    from ..wordnet import WordNetNotFoundError, wordnet_triples

    try:
        texts = [row["query"] for row in wordnet_triples("heldout", limit=count)]
    except WordNetNotFoundError:
        return []
    return [{"text": e.text, "rationale": e.rationale} for e in encode_with_rationales(model, texts)]


def suite_scores(
    model: SentenceTransformer,
    splits: tuple[str, ...] = ("test",),
    max_queries: int | None = None,
    batch_size: int = 64,
    cache: bool | str = True,
) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """``mode -> split -> task -> {"metric", "score", "per_query"}`` for the suite's tasks, in both :data:`MODES`.

    ``rationale`` is the model as configured (its per-role modes included); ``input`` is the same model with span
    ``"input"`` and no per-role modes (no generation for any role). The model's span and modes are restored afterwards.
    """
    import mteb

    from ..mteb_encoder import GraceEncoder
    from ..suite_tasks import suite_tasks

    generator = model[0]
    own_span, own_modes = generator.span, generator.role_modes
    scores: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    try:
        for mode in MODES:
            generator.span = own_span if mode == "rationale" else "input"
            generator.role_modes = own_modes if mode == "rationale" else None  # modes would override the span
            encoder = GraceEncoder(model, cache=cache)  # a new fingerprint for the new span
            scores[mode] = {}
            for split in splits:
                tasks = suite_tasks(split, max_queries)
                result = mteb.evaluate(
                    encoder, tasks, cache=None, show_progress_bar=False, encode_kwargs={"batch_size": batch_size}
                )
                by_name = {r.task_name: r for r in result.task_results}
                scores[mode][split] = {
                    task.metadata.name: {
                        "metric": task.metadata.main_score,
                        "score": float(by_name[task.metadata.name].get_score()),
                        "per_query": task.per_query[split],
                    }
                    for task in tasks
                }
    finally:
        generator.span, generator.role_modes = own_span, own_modes
    return scores


def base_choice(base: dict[str, Any], task: str) -> str:
    """The base mode that scored higher on ``task``'s validation part (ties: ``input``, which costs no generation)."""
    validation = {mode: base[mode]["validation"][task]["score"] for mode in MODES}
    return "rationale" if validation["rationale"] > validation["input"] else "input"


def suite_report(
    base: dict[str, Any], trained: dict[str, Any], n_resamples: int = 1000, seed: int = 0
) -> list[dict[str, Any]]:
    """One row per test task (keys :data:`REPORT_KEYS`): trained minus the validation-chosen base, with 95% CIs.

    ``base`` and ``trained`` are :func:`suite_scores` results (the base's with validation and test). ``diff`` is the
    trained model (its own mode) minus the chosen base; ``trained_input_diff`` the trained model scored input-only
    minus the same base, so the note can say whether the rationale or the input pooling carried the gain.
    """
    from ..paired_bootstrap import paired_bootstrap, paired_scores

    rows = []
    for name, result in trained["rationale"]["test"].items():
        choice = base_choice(base, name)
        chosen = base[choice]["test"][name]["per_query"]
        diff, low, high = paired_bootstrap(*paired_scores(result["per_query"], chosen), n_resamples, seed)
        own_input = trained["input"]["test"][name]
        input_diff, input_low, input_high = paired_bootstrap(
            *paired_scores(own_input["per_query"], chosen), n_resamples, seed
        )
        rows.append(
            {
                "task": name,
                "metric": result["metric"],
                "queries": len(result["per_query"]),
                "base_input": base["input"]["test"][name]["score"],
                "base_rationale": base["rationale"]["test"][name]["score"],
                "base_choice": choice,
                "trained": result["score"],
                "diff": diff,
                "ci_low": low,
                "ci_high": high,
                "trained_input": own_input["score"],
                "trained_input_diff": input_diff,
                "trained_input_ci_low": input_low,
                "trained_input_ci_high": input_high,
            }
        )
    return rows
