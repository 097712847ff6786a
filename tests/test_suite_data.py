"""The held-out suite's data: parsing, splits by source item (disjoint and deterministic), training triples."""

from __future__ import annotations

import json

import pytest
from suite_markers import needs_man_pages

from grace_st import suite
from grace_st.suite_manpages import ManPagesNotFoundError, man_dir, parse_page, roff_to_text
from grace_st.suite_pydoc import split_docstring
from grace_st.wordnet import split_of as wordnet_split_of
from grace_st.wordnet import suite_split_of, wordnet_triples


PAGE = r""".\" a comment
.TH read 2 2022-12-04 "Linux man-pages 6.03"
.SH NAME
read \- read from a file descriptor
.SH DESCRIPTION
.BR read ()
attempts to read up to
.I count
bytes from file descriptor
.IR fd .
.PP
It returns \-1 on error (\fBEINTR\fP), see
.BR signal (7).
.TS
tab;
l l.
a	b
.TE
Reads of \(aqzero\(aq bytes are allowed, and a long sentence follows so that the description is long enough.
.SH RETURN VALUE
Something else.
"""


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRACE_CACHE", str(tmp_path / "grace-cache"))
    return tmp_path / "grace-cache"


def test_roff_page_gives_name_description_and_plain_text():
    query, document = parse_page(PAGE)
    assert query == "read from a file descriptor"
    assert document.startswith("read() attempts to read up to count bytes from file descriptor fd.")
    assert "returns -1 on error (EINTR), see signal(7)." in document
    assert "'zero'" in document and "tab;" not in document and "Something else" not in document
    assert parse_page(".so man2/read.2\n") is None  # an alias page
    assert parse_page(PAGE.replace("Linux man-pages", "X Version 11")) is None  # another project's page
    assert roff_to_text(['.BI "int " fd\\ x', "plain"]) == "int fd x plain"


def test_docstring_summary_and_body():
    doc = "Round to the nearest integer.  The rounding mode\nis given.\n\n" + "More words here. " * 8
    summary, body = split_docstring(doc)
    assert summary == "Round to the nearest integer."
    assert body.startswith("The rounding mode is given. More words")
    assert split_docstring("sorted(iterable, /, *, key=None)\n\n" + "x " * 60) is None  # a signature, not a summary
    assert split_docstring("Short summary.\n\nToo short a body.") is None


def test_wordnet_suite_split_halves_the_heldout_part():
    words = [f"word{i}" for i in range(4000)]
    for word in words:
        part = suite_split_of(word)
        assert (part == "train") == (wordnet_split_of(word) == "train")
    parts = [suite_split_of(word) for word in words]
    assert 0.3 < parts.count("validation") / max(1, parts.count("test")) < 3


def test_wordnet_parts_share_no_word():
    words = {
        split: {row["word"].lower() for row in wordnet_triples(split)} for split in ("train", "validation", "test")
    }
    assert words["validation"] and words["test"]
    assert not words["train"] & words["validation"] and not words["train"] & words["test"]
    assert not words["validation"] & words["test"]


@pytest.mark.parametrize("domain", [pytest.param("manpages", marks=needs_man_pages), "pydoc"])
def test_splits_share_no_source_item_or_text_and_are_deterministic(domain, isolated_cache):
    path = suite.build(domain)
    first = path.read_bytes()
    rows = {split: suite.domain_rows(domain, split) for split in suite.SPLITS}
    assert all(len(rows[split]) > 50 for split in suite.SPLITS)
    items = {split: {row["item"] for row in rows[split]} for split in suite.SPLITS}
    queries = [row["query"].lower() for split in suite.SPLITS for row in rows[split]]
    documents = [row["document"] for split in suite.SPLITS for row in rows[split]]
    assert len(set(queries)) == len(queries) and len(set(documents)) == len(documents)
    for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
        assert not items[a] & items[b], f"{domain}: {items[a] & items[b]} in both {a} and {b}"
    assert suite.build(domain, force=True).read_bytes() == first  # rebuilt byte for byte
    assert not list(path.parent.glob(".*.tmp"))  # no temporary file left behind
    assert json.loads(first.splitlines()[0])["source"]  # the data records its source version


@needs_man_pages
def test_eval_rows_are_capped_prefixes_of_the_heldout_parts(isolated_cache):
    full = suite.eval_rows("manpages", "test")
    assert len(full) == min(suite.EVAL_QUERIES["test"], len(suite.domain_rows("manpages", "test")))
    assert suite.eval_rows("manpages", "test", max_queries=7) == full[:7]
    with pytest.raises(ValueError, match="train rows are for training"):
        suite.eval_rows("manpages", "train")


@needs_man_pages
def test_train_triples_come_from_train_items_only_and_mix_domains(isolated_cache):
    triples = suite.train_triples(("manpages", "pydoc"))
    train_docs = {row["document"] for d in ("manpages", "pydoc") for row in suite.domain_rows(d, "train")}
    heldout_docs = {
        row["document"] for d in ("manpages", "pydoc") for s in suite.EVAL_SPLITS for row in suite.domain_rows(d, s)
    }
    assert len(triples) == sum(len(suite.domain_rows(d, "train")) for d in ("manpages", "pydoc"))
    for row in triples:
        assert row["positive"] in train_docs and row["negative"] in train_docs and row["negative"] != row["positive"]
    assert not {row["positive"] for row in triples} & heldout_docs
    pydoc_queries = {row["query"] for row in suite.domain_rows("pydoc", "train")}
    assert {row["query"] in pydoc_queries for row in triples[:10]} == {True, False}  # domains alternate
    assert suite.train_triples(("manpages", "pydoc")) == triples


@needs_man_pages
def test_builtin_suite_dataset(isolated_cache):
    from grace_st.train.data import load_source

    data = load_source("grace:suite-manpages", split="test")  # whatever split is asked: train rows only
    assert data.column_names == ["query", "positive", "negative"]
    assert len(data) == len(suite.domain_rows("manpages", "train"))


def test_missing_man_pages_error_names_the_fix(tmp_path):
    with pytest.raises(ManPagesNotFoundError, match="apt-get install -y manpages-dev"):
        man_dir(tmp_path)
