"""The held-out suite as mteb retrieval tasks (nDCG@10), one per domain, and the ``grace-heldout`` benchmark.

Each task takes ``split`` (``"validation"`` to choose settings, ``"test"`` to report) and ``max_queries`` (default
:data:`grace_st.suite.EVAL_QUERIES`). The corpus is the documents of the chosen queries; WordNet's also holds the
definition of another sense of each word (a hard distractor, as in ``GraceWordNetDefinitionRetrieval``).

Scoring is mteb's own: ``RetrievalEvaluator`` ranks, pytrec_eval scores every query, mteb averages. mteb hands those
per-query scores to the task's ``task_specific_scores`` hook and drops them afterwards; these tasks keep them in
``per_query[split]`` (query id -> nDCG@10), so a paired bootstrap can compare two models on the same queries. Their
mean is mteb's main score (mteb rounds it to 5 decimals).
"""

from __future__ import annotations

from typing import Any, ClassVar

from mteb import TaskMetadata
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData

from .errors import GraceUserError
from .suite import EVAL_SPLITS, FORMAT_VERSION, eval_rows


PER_QUERY_METRIC = "ndcg_cut_10"  # pytrec_eval's name for mteb's ndcg_at_10
BENCHMARK = "grace-heldout"
_COMMON: dict[str, Any] = dict(
    category="t2t",
    eval_splits=list(EVAL_SPLITS),
    eval_langs=["eng-Latn"],
    dialect=[],
    task_subtypes=[],
    annotations_creators="derived",
    modalities=["text"],
    sample_creation="found",
    type="Retrieval",
    main_score="ndcg_at_10",
)


class SuiteRetrieval(AbsTaskRetrieval):
    """One domain of the held-out suite; subclasses set ``domain`` and ``metadata``.

    Args:
        split: ``"validation"`` or ``"test"``.
        max_queries: queries to use (a prefix of a fixed order); ``None`` for the suite's default.
    """

    domain: ClassVar[str]

    def __init__(self, split: str = "test", max_queries: int | None = None, **kwargs: Any) -> None:
        if split not in EVAL_SPLITS:
            raise GraceUserError(f"split={split!r} is not an evaluation split; use one of {EVAL_SPLITS}.")
        if max_queries is not None and (not isinstance(max_queries, int) or max_queries < 1):
            raise GraceUserError(f"max_queries must be a positive integer or None, got {max_queries!r}.")
        super().__init__(**kwargs)
        self.split = split
        self.max_queries = max_queries
        self.filter_eval_splits([split])
        self.per_query: dict[str, dict[str, float]] = {}
        self.query_texts: dict[str, str] = {}

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        from datasets import Dataset

        rows = eval_rows(self.domain, self.split, self.max_queries)
        documents: dict[str, str] = {}
        for row in rows:
            for text in self._documents(row):
                documents.setdefault(text, f"d{len(documents)}")
        self.query_texts = {f"q{i}": row["query"] for i, row in enumerate(rows)}
        qrels = {f"q{i}": {documents[self._documents(row)[0]]: 1} for i, row in enumerate(rows)}
        split = RetrievalSplitData(
            queries=Dataset.from_list([{"id": qid, "text": text} for qid, text in self.query_texts.items()]),
            corpus=Dataset.from_list([{"id": did, "title": "", "text": text} for text, did in documents.items()]),
            relevant_docs=qrels,
            top_ranked=None,
        )
        self.dataset = {"default": {self.split: split}}
        self.data_loaded = True

    @staticmethod
    def _documents(row: dict[str, Any]) -> list[str]:
        """The relevant document first, then any distractor the row brings into the corpus."""
        return [row["document"]]

    def task_specific_scores(
        self,
        scores: dict[str, dict[str, float]],
        qrels: Any,
        results: Any,
        hf_split: str,
        hf_subset: str,
    ) -> dict[str, float]:
        """Keep mteb's per-query scores (it would drop them) for the paired bootstrap; adds no score of its own."""
        self.per_query[hf_split] = {qid: float(values[PER_QUERY_METRIC]) for qid, values in scores.items()}
        return {}


class SuiteWordNetRetrieval(SuiteRetrieval):
    domain = "wordnet"
    metadata = TaskMetadata(
        name="GraceSuiteWordNetRetrieval",
        description="Retrieve the WordNet definition of a word sense from an example sentence; held-out words "
        "(split by lemma); the corpus also holds another sense's definition of each word.",
        reference="https://wordnet.princeton.edu/",
        dataset={"path": "grace-st/suite-wordnet", "revision": f"{FORMAT_VERSION}-wordnet-3.0"},
        date=("1985-01-01", "2006-12-31"),
        domains=["Written"],
        license="https://wordnet.princeton.edu/license-and-commercial-use",
        bibtex_citation="",
        **_COMMON,
    )

    @staticmethod
    def _documents(row: dict[str, Any]) -> list[str]:
        return [row["positive"], row["negative"]]


class SuiteManPagesRetrieval(SuiteRetrieval):
    domain = "manpages"
    metadata = TaskMetadata(
        name="GraceSuiteManPagesRetrieval",
        description="Retrieve a Linux man page's DESCRIPTION (sections 2 and 3, first ~1200 characters) from its "
        "NAME line; held-out pages.",
        reference="https://www.kernel.org/doc/man-pages/",
        dataset={"path": "grace-st/suite-manpages", "revision": f"{FORMAT_VERSION}-manpages-dev"},
        date=("1992-01-01", "2022-12-31"),
        domains=["Programming", "Written"],
        license="https://spdx.org/licenses/Linux-man-pages-copyleft.html",
        bibtex_citation="",
        **_COMMON,
    )


class SuitePydocRetrieval(SuiteRetrieval):
    domain = "pydoc"
    metadata = TaskMetadata(
        name="GraceSuitePydocRetrieval",
        description="Retrieve the body of a Python standard-library docstring from its summary line; held-out "
        "modules.",
        reference="https://docs.python.org/3/library/",
        dataset={"path": "grace-st/suite-pydoc", "revision": f"{FORMAT_VERSION}-python-stdlib"},
        date=("1991-01-01", "2024-12-31"),
        domains=["Programming", "Written"],
        license="https://docs.python.org/3/license.html",
        bibtex_citation="",
        **_COMMON,
    )


SUITE_TASKS: dict[str, type[SuiteRetrieval]] = {
    task.metadata.name: task for task in (SuiteWordNetRetrieval, SuiteManPagesRetrieval, SuitePydocRetrieval)
}
"""The suite's tasks by mteb name; ``grace eval --tasks`` accepts them (with ``--split``/``--max-queries``)."""


def suite_tasks(split: str = "test", max_queries: int | None = None) -> list[SuiteRetrieval]:
    """Fresh task objects of the ``grace-heldout`` benchmark (one per domain) for ``split``."""
    return [task(split=split, max_queries=max_queries) for task in SUITE_TASKS.values()]
