"""``search_corpus`` and ``grace search``: the right ranking, and a second search over a corpus generates nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from grace_st import search_corpus
from grace_st.cli import main
from grace_st.rationale_cache import EncodingCache


CORPUS = [
    "A cat sat on the mat.",
    "Stock markets fell sharply today after the announcement.",
    "The mitochondria is the powerhouse of the cell.",
    "where is the nearest train station?",
    "Photosynthesis turns light into chemical energy in plants.",
]
QUERY = "what do cats sit on?"


def test_help_names_every_option(capsys):
    for command in ("search", "explain"):
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("CORPUS_FILE", "--query", "--top-k", "--document", "--json", "--html", "MODEL"):
        assert flag in out, flag


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test's encoding cache lives in its tmp_path; the user's cache is never touched."""
    monkeypatch.setenv("GRACE_CACHE", str(tmp_path / "grace-cache"))


def test_ranking_is_encode_query_against_encode_document(grace_tiny):
    result = search_corpus(grace_tiny, QUERY, iter(CORPUS), top_k=3, chunk_size=2)
    scores = grace_tiny.encode_document(CORPUS) @ grace_tiny.encode_query(QUERY)
    order = np.argsort(-scores, kind="stable")[:3]
    assert [hit.index for hit in result.hits] == order.tolist()
    assert [hit.text for hit in result.hits] == [CORPUS[i] for i in order]
    assert [hit.score for hit in result.hits] == pytest.approx(scores[order].tolist(), abs=1e-6)
    assert result.corpus_size == 5 and result.texts_generated == 6  # no cache: every text and the query
    whole = search_corpus(grace_tiny, QUERY, CORPUS, top_k=3, chunk_size=100)
    assert [(h.index, h.text, h.rationale) for h in whole.hits] == [
        (h.index, h.text, h.rationale) for h in result.hits
    ]
    assert [h.score for h in whole.hits] == pytest.approx([h.score for h in result.hits], abs=1e-6)  # batch rounding


def test_cache_serves_the_corpus_and_a_new_query_is_the_only_generation(grace_tiny, tmp_path):
    cache = EncodingCache(tmp_path / "cache.sqlite")
    first = search_corpus(grace_tiny, QUERY, CORPUS + CORPUS[:1], top_k=10, cache=cache)
    assert first.texts_generated == 6, "a repeated text is encoded once"
    again = search_corpus(grace_tiny, QUERY, CORPUS + CORPUS[:1], top_k=10, cache=cache)
    assert again.texts_generated == 0 and again.hits == first.hits
    other = search_corpus(grace_tiny, "a train station", CORPUS, top_k=2, cache=cache)
    assert other.texts_generated == 1


@pytest.fixture
def tiny_folder(grace_tiny, tmp_path):
    from grace_st import save_grace_model

    return str(save_grace_model(grace_tiny, tmp_path / "model"))


def test_second_cli_search_generates_no_rationale(tiny_folder, tmp_path, monkeypatch, capsys):
    """Counted at the backbone: any generation or forward runs the token-embedding layer."""
    import grace_st.loading

    forwards = []
    load = grace_st.loading.load_grace_model

    def counting_load(*args, **kwargs):
        model = load(*args, **kwargs)
        model[0].model.get_input_embeddings().register_forward_hook(lambda *_: forwards.append(1))
        return model

    monkeypatch.setattr(grace_st.loading, "load_grace_model", counting_load)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": text}) + "\n" for text in CORPUS))
    argv = ["search", str(corpus), tiny_folder, "--query", QUERY, "--top-k", "3"]

    assert main(argv) == 0
    first = capsys.readouterr()
    assert forwards, "the first search encodes the corpus"
    forwards.clear()
    assert main(argv) == 0
    second = capsys.readouterr()
    assert forwards == [], "the second search generated or ran the backbone"
    assert second.out == first.out
    assert "encoded 0 texts" in second.err and "encoded 6 texts" in first.err
    assert first.out.count("rationale:") == 4 and "1. " in first.out and "4. " not in first.out


def test_cli_output_strips_control_characters(tiny_folder, tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("A cat\x1b]0;pwned\x07 sat \x1b[2Jon the \u202emat.\n\nStock markets fell.\n")
    assert main(["search", str(corpus), tiny_folder, "--query", "cat\x1b[31m"]) == 0
    out = capsys.readouterr().out
    assert not any(ch in out for ch in "\x1b\x07\u202e")
    assert "A cat]0;pwned sat [2Jon the mat." in out


@pytest.mark.parametrize(
    ("corpus_text", "extra", "message"),
    [
        (None, ["--query", "q"], "No such corpus file: "),
        ("a text\n", ["--query", "  "], "--query '  ' is empty"),
        ("a text\n", ["--query", "q", "--top-k", "0"], "--top-k must be a positive integer, got 0"),
        ("a text\n", ["--query", "q", "--batch-size", "-1"], "--batch-size must be a positive integer, got -1"),
    ],
)
def test_cli_user_mistakes_end_in_one_line_before_loading(tmp_path, corpus_text, extra, message, capsys):
    corpus = tmp_path / "corpus.txt"
    if corpus_text is not None:
        corpus.write_text(corpus_text)
    assert main(["search", str(corpus), *extra]) == 2  # no MODEL: the checks come before the default is loaded
    err = capsys.readouterr().err
    assert err.startswith("grace: error: ") and message in err and "Traceback" not in err


def test_empty_corpus_is_refused(tiny_folder, tmp_path, capsys):
    corpus = tmp_path / "blank.txt"
    corpus.write_text("\n  \n")
    assert main(["search", str(corpus), tiny_folder, "--query", "q"]) == 2
    assert "The corpus holds no texts" in capsys.readouterr().err
