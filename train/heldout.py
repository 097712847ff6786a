"""Held-out scores before and after training, and example rationales for the model card.

``wordnet``: retrieval of WordNet definitions from example sentences, on the held-out split of the same source the
quickstart trains on (words never seen in training; see ``grace_st.wordnet``), scored with mteb as nDCG@10.
"""

from __future__ import annotations

from typing import Any

from sentence_transformers import SentenceTransformer

from .config import GraceConfig


def heldout_score(model: SentenceTransformer, args: GraceConfig) -> dict[str, Any]:
    """``{"task", "metric", "score"}`` of ``model`` on ``args.heldout_eval``, evaluated with mteb (no result cache)."""
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
