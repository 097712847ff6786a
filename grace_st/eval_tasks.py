"""Offline mteb tasks built from real data on this machine (WordNet 3.0 via Debian's ``wordnet-base``).

All use the *held-out* split of :mod:`grace_st.wordnet` (words never seen by the training quickstart), are sized by a
constructor argument, and are usable by name in ``grace eval --tasks`` (see :data:`OFFLINE_TASKS`):

- ``GraceWordNetDefinitionRetrieval`` (retrieval, nDCG@10): example sentence -> its sense's definition;
- ``GraceWordNetSensePairClassification`` (pair classification, max AP): is this the definition of the sense the
  example sentence uses (1), or of another sense of the same word (0)?
- ``GraceWordNetLexnameClustering`` (clustering, V-measure): definitions grouped by WordNet's lexicographer
  category (noun.animal, verb.motion, ...).

``GraceWordNetDefinitionRetrieval`` is the held-out evaluation of the training quickstart: queries are example
sentences of word senses whose words never occur in the training split, the corpus is the definitions of those
senses *and* of another sense of the same word (hard distractors), and the one relevant document is the sense's own
definition. Scored by mteb's retrieval evaluator (nDCG@10 main score).
"""

from __future__ import annotations

from typing import Any

from mteb import TaskMetadata
from mteb.abstasks.clustering import AbsTaskClustering
from mteb.abstasks.pair_classification import AbsTaskPairClassification
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData

from .errors import GraceUserError


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
            raise GraceUserError(f"n_queries must be a positive integer, got {n_queries!r}.")
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


def _positive_int(name: str, value: Any) -> int:
    if not isinstance(value, int) or value < 1:
        raise GraceUserError(f"{name} must be a positive integer, got {value!r}.")
    return value


class WordNetSensePairClassification(AbsTaskPairClassification):
    """Pairs (example sentence, definition): its own sense's definition (1) or another sense of the word (0)."""

    metadata = TaskMetadata(
        name="GraceWordNetSensePairClassification",
        description="Decide whether a WordNet definition is that of the sense used in an example sentence (1) or of "
        "another sense of the same word (0).",
        type="PairClassification",
        main_score="max_ap",
        **_WORDNET,
    )

    def __init__(self, n_examples: int = 32, **kwargs: Any) -> None:
        self.n_examples = _positive_int("n_examples", n_examples)
        super().__init__(**kwargs)

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        from datasets import Dataset, DatasetDict

        from .wordnet import wordnet_triples

        rows = wordnet_triples("heldout", limit=self.n_examples, seed=1)
        pairs = [(r["query"], r["positive"], 1) for r in rows] + [(r["query"], r["negative"], 0) for r in rows]
        columns = {
            "sentence1": [p[0] for p in pairs],
            "sentence2": [p[1] for p in pairs],
            "labels": [p[2] for p in pairs],
        }
        self.dataset = DatasetDict({"test": Dataset.from_dict(columns)})
        self.data_loaded = True


class WordNetLexnameClustering(AbsTaskClustering):
    """Cluster held-out WordNet definitions by lexicographer category (the most frequent categories only)."""

    metadata = TaskMetadata(
        name="GraceWordNetLexnameClustering",
        description="Cluster WordNet definitions of held-out words by their lexicographer category.",
        type="Clustering",
        main_score="v_measure",
        **_WORDNET,
    )
    max_fraction_of_documents_to_embed = None
    n_clusters = 3  # clustering repetitions over the same embeddings

    def __init__(self, n_per_category: int = 12, n_categories: int = 6, **kwargs: Any) -> None:
        self.n_per_category = _positive_int("n_per_category", n_per_category)
        self.n_categories = _positive_int("n_categories", n_categories)
        super().__init__(**kwargs)

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        from collections import Counter

        from datasets import Dataset, DatasetDict

        from .wordnet import load_synsets, split_of

        synsets = [s for s in load_synsets() if split_of(s.lemmas[0]) == "heldout"]
        top = [name for name, _ in Counter(s.lexname for s in synsets).most_common(self.n_categories)]
        sentences, labels = [], []
        for label, lexname in enumerate(top):
            chosen = [s.definition for s in synsets if s.lexname == lexname][: self.n_per_category]
            sentences += chosen
            labels += [label] * len(chosen)
        self.max_documents_per_cluster = len(sentences)
        self.dataset = DatasetDict({"test": Dataset.from_dict({"sentences": sentences, "labels": labels})})
        self.data_loaded = True


OFFLINE_TASKS: dict[str, type] = {
    task.metadata.name: task
    for task in (WordNetDefinitionRetrieval, WordNetSensePairClassification, WordNetLexnameClustering)
}
"""The project's offline tasks by mteb name; ``grace eval --tasks`` accepts these beside mteb's own names."""
