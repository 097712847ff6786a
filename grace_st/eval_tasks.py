"""Offline mteb tasks built from real data on this machine (WordNet 3.0 via Debian's ``wordnet-base``).

``GraceWordNetDefinitionRetrieval`` is the held-out evaluation of the training quickstart: queries are example
sentences of word senses whose words never occur in the training split, the corpus is the definitions of those
senses *and* of another sense of the same word (hard distractors), and the one relevant document is the sense's own
definition. Scored by mteb's retrieval evaluator (nDCG@10 main score).
"""

from __future__ import annotations

from typing import Any

from mteb import TaskMetadata
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData


_WORDNET = dict(
    reference="https://wordnet.princeton.edu/",
    dataset={"path": "grace-st/wordnet-3.0-debian", "revision": "wordnet-base-3.0"},
    category="t2t",
    eval_splits=["test"],
    eval_langs=["eng-Latn"],
    date=("1985-01-01", "2006-12-31"),
    dialect=[],
    domains=["Written"],
    task_subtypes=[],
    license="https://wordnet.princeton.edu/license-and-commercial-use",
    annotations_creators="expert-annotated",
    modalities=["text"],
    sample_creation="found",
    bibtex_citation="@book{fellbaum1998wordnet, title={WordNet: An Electronic Lexical Database}, "
    "author={Fellbaum, Christiane}, year={1998}, publisher={MIT Press}}",
)


class WordNetDefinitionRetrieval(AbsTaskRetrieval):
    """Find a word sense's definition from one of its example sentences, among definitions of the same words.

    Args:
        n_queries: how many held-out senses to use (each adds one query and up to two definitions). The default
            keeps a rationale-mode evaluation of a 135M backbone within a couple of minutes on two CPU cores.
    """

    metadata = TaskMetadata(
        name="GraceWordNetDefinitionRetrieval",
        description="Retrieve the WordNet definition of a word sense from an example sentence of it; the corpus "
        "holds the definitions of the held-out senses and of another sense of each word.",
        type="Retrieval",
        main_score="ndcg_at_10",
        **_WORDNET,
    )

    def __init__(self, n_queries: int = 48, **kwargs: Any) -> None:
        if not isinstance(n_queries, int) or n_queries < 1:
            raise ValueError(f"n_queries must be a positive integer, got {n_queries!r}.")
        self.n_queries = n_queries
        super().__init__(**kwargs)

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        from datasets import Dataset

        from .wordnet import wordnet_triples

        rows = wordnet_triples("heldout", limit=self.n_queries)
        definitions: dict[str, str] = {}
        for row in rows:
            for text in (row["positive"], row["negative"]):
                definitions.setdefault(text, f"d{len(definitions)}")
        queries = [{"id": f"q{i}", "text": row["query"]} for i, row in enumerate(rows)]
        corpus = [{"id": doc_id, "title": "", "text": text} for text, doc_id in definitions.items()]
        qrels = {f"q{i}": {definitions[row["positive"]]: 1} for i, row in enumerate(rows)}
        split = RetrievalSplitData(
            queries=Dataset.from_list(queries), corpus=Dataset.from_list(corpus), relevant_docs=qrels, top_ranked=None
        )
        self.dataset = {"default": {"test": split}}
        self.data_loaded = True
