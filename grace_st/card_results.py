"""Write mteb scores into a model folder's card as ``model-index``, keeping the rest of the card.

The Hub and mteb's leaderboard read evaluation results from the card's YAML ``model-index``; huggingface_hub's
``ModelCard`` / ``EvalResult`` produce it. Only the metadata block changes: the card's text is kept as written,
results for other tasks already in the card are kept, and a task evaluated again replaces its old entry. The file is
replaced atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard

from .atomic import atomic_file
from .errors import GraceFileNotFoundError


def eval_results_from_mteb(task_results: list[Any], tasks: dict[str, Any]) -> list[EvalResult]:
    """One ``EvalResult`` per (task, split, subset) main score, in mteb's ``MTEB <task>`` naming.

    ``tasks`` maps task names to the task objects that were evaluated (for their metadata).
    """
    results = []
    for task_result in task_results:
        metadata = tasks[task_result.task_name].metadata
        for split, subsets in task_result.scores.items():
            for subset_scores in subsets:
                subset = subset_scores.get("hf_subset", "default")
                results.append(
                    EvalResult(
                        task_type=metadata.type,
                        dataset_type=metadata.dataset["path"],
                        dataset_name=f"MTEB {metadata.name}" + ("" if subset == "default" else f" ({subset})"),
                        dataset_config=subset,
                        dataset_split=split,
                        dataset_revision=metadata.dataset.get("revision"),
                        metric_type=metadata.main_score,
                        metric_value=float(subset_scores["main_score"]),
                        source_name="MTEB (grace eval)",
                        source_url="https://github.com/embeddings-benchmark/mteb",
                    )
                )
    return results


def update_card(folder: str | os.PathLike, results: list[EvalResult], model_name: str | None = None) -> Path:
    """Merge ``results`` into ``folder/README.md``'s ``model-index``; returns the card path."""
    path = Path(folder) / "README.md"
    if not path.is_file():
        raise GraceFileNotFoundError(
            f"'{folder}' has no README.md model card to update. Save the model with grace first."
        )
    card = ModelCard.load(path)
    new_keys = {(r.dataset_name, r.dataset_split, r.metric_type) for r in results}
    kept = [
        r for r in (card.data.eval_results or []) if (r.dataset_name, r.dataset_split, r.metric_type) not in new_keys
    ]
    card.data.eval_results = kept + results
    card.data.model_name = card.data.model_name or model_name or Path(folder).resolve().name
    with atomic_file(path, newline="") as handle:  # as ModelCard.save writes it
        handle.write(str(card))
    return path
