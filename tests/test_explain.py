"""``explain_match`` and ``grace explain``: per-token contributions that add up to the score, checked independently."""

from __future__ import annotations

import json

import pytest
import torch

from grace_st import explain_match
from grace_st.cli import main
from grace_st.errors import GraceUserError
from grace_st.modeling.spans import pooled_span_mask, rationale_mask
from grace_st.role_encoding import role_prompt


QUERY = "where is the cat?"
DOCUMENTS = ["A cat sat on the mat.", "Stock markets fell sharply today after the announcement."]


def _unit_and_hidden(model, text: str, role: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-pass recomputation: run the backbone over the unpadded ``[prompt | rationale]`` of ``text`` alone and
    return its GRACE unit vector and its pooled hidden states ``(n, H)``, in sequence order."""
    generator = model[0]
    encode = model.encode_query if role == "query" else model.encode_document
    out = encode([text], output_value=None)[0]  # only the generated ids are taken from the module
    features = generator.preprocess([text], prompt=role_prompt(model, role))
    prompt_ids, prompt_span = features["input_ids"], features["prompt_span_mask"]
    rationale_ids = out["rationale_ids"][None].cpu()
    completion = None if generator.span == "input" else rationale_mask(rationale_ids, generator.end_ids)
    ids = torch.cat([prompt_ids, rationale_ids], 1)
    with torch.no_grad():
        hidden = generator.model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0].double()
    pooled = hidden[pooled_span_mask(prompt_span, completion, generator.span)[0].bool()]
    mean = pooled.mean(0)
    return mean / mean.norm(), pooled


def _expected_values(model, query: str, document: str) -> list[float]:
    """The issue's formula on the recomputed states: 1/2 (h_t . v) / (n_q |mean_q|), 1/2 (h_t . u) / (n_d |mean_d|)."""
    u, query_hidden = _unit_and_hidden(model, query, "query")
    v, document_hidden = _unit_and_hidden(model, document, "document")
    values = [
        0.5 * (hidden @ other) / (len(hidden) * hidden.mean(0).norm())
        for hidden, other in ((query_hidden, v), (document_hidden, u))
    ]
    return torch.cat(values).tolist()


def _check_exact(model, explanations) -> float:
    """Every explanation: sum == score (1e-4), score == encode_query . encode_document, values == recomputation.
    Returns the largest |sum - score|."""
    worst = 0.0
    query_vector = model.encode_query(QUERY, convert_to_tensor=True).double()
    for explanation in explanations:
        total = sum(value for _, _, value in explanation.contributions)
        worst = max(worst, abs(total - explanation.score))
        assert total == pytest.approx(explanation.score, abs=1e-4)
        document_vector = model.encode_document(explanation.document, convert_to_tensor=True).double()
        assert explanation.score == pytest.approx(float(query_vector @ document_vector), abs=1e-5)
        expected = _expected_values(model, explanation.query, explanation.document)
        assert [value for _, _, value in explanation.contributions] == pytest.approx(expected, abs=2e-5)
    return worst


@pytest.mark.parametrize(
    ("span", "sources"),
    [
        ("input_and_rationale", {"query_text", "template", "query_rationale", "document_text", "document_rationale"}),
        ("rationale", {"query_rationale", "document_rationale"}),
        ("input", {"query_text", "template", "document_text"}),
    ],
)
def test_contributions_are_exact_and_marked_by_source(build_tiny, span, sources):
    model = build_tiny(span=span)
    explanations = explain_match(model, QUERY, DOCUMENTS)
    assert [e.document for e in explanations] == DOCUMENTS
    _check_exact(model, explanations)
    for explanation in explanations:
        assert {source for _, source, _ in explanation.contributions} == sources
        query_side, document_side = explanation.sides()
        assert sum(c.value for c in query_side) == pytest.approx(explanation.score / 2, abs=1e-5)  # as documented
        assert all(not s.startswith("document") for _, s, _ in query_side)
        assert all(not s.startswith("query") for _, s, _ in document_side)
        if "query_text" in sources:  # the text tokens are the text, in order
            assert "".join(t for t, s, _ in query_side if s == "query_text") == QUERY
            assert "".join(t for t, s, _ in document_side if s == "document_text") == explanation.document
        if span == "input":  # nothing generated (the tiny model's rationales may be blank too, so only this way)
            assert explanation.query_rationale == explanation.document_rationale == ""


def test_explanation_follows_the_stored_query_and_document_prompts(build_tiny):
    """Different query and document prompts: the explained score is that of encode_query and encode_document."""
    model = build_tiny()
    model.prompts = {"query": "Explain what this question asks.", "document": "Summarise this passage."}
    explanations = explain_match(model, QUERY, DOCUMENTS[:1])
    _check_exact(model, explanations)


def test_top_orders_by_size_and_json_has_the_documented_keys(grace_tiny):
    (explanation,) = explain_match(grace_tiny, QUERY, DOCUMENTS[0])
    top = explanation.top(5)
    assert [abs(c.value) for c in top] == sorted((abs(c.value) for c in explanation.contributions), reverse=True)[:5]
    record = json.loads(json.dumps(explanation.to_json()))
    assert {"score", "query_rationale", "document_rationale", "contributions"} <= set(record)
    assert record["contributions"][0] == list(explanation.contributions[0])


def test_explain_refuses_what_it_cannot_explain(grace_tiny):
    with pytest.raises(GraceUserError, match="at least one document"):
        explain_match(grace_tiny, QUERY, [])
    with pytest.raises(GraceUserError, match="empty"):
        explain_match(grace_tiny, " ", DOCUMENTS)
    from sentence_transformers import SentenceTransformer

    no_normalize = SentenceTransformer(modules=[grace_tiny[0], grace_tiny[1]], device="cpu")
    with pytest.raises(GraceUserError, match="Only a GRACE model"):
        explain_match(no_normalize, QUERY, DOCUMENTS)


@pytest.fixture
def tiny_folder(build_tiny, tmp_path):
    from grace_st import save_grace_model

    return str(save_grace_model(build_tiny(), tmp_path / "model"))


def test_cli_json_one_object_per_document(tiny_folder, capsys):
    argv = ["explain", tiny_folder, "--query", QUERY, "--json"]
    assert main(argv + [arg for d in DOCUMENTS for arg in ("--document", d)]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["document"] for r in records] == DOCUMENTS
    for record in records:
        assert sum(value for _, _, value in record["contributions"]) == pytest.approx(record["score"], abs=1e-4)


def test_cli_text_output_strips_control_characters(tiny_folder, capsys):
    hostile = "A cat\x1b]0;pwned\x07 sat\x1b[2J on the \u202emat."
    assert main(["explain", tiny_folder, "--query", QUERY, "--document", hostile, "--top-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "score" in out and "top 3 of" in out
    assert not any(ch in out for ch in "\x1b\x07\u202e")
    assert "A cat]0;pwned sat[2J on the mat." in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--query", " ", "--document", "x"], "--query ' ' is empty"),
        (["--query", "q", "--document", ""], "--document '' is empty"),
        (["--query", "q", "--document", "x", "--top-k", "0"], "--top-k must be a positive integer, got 0"),
        (["--query", "q", "--document", "x", "--html", "/no/such/dir/p.html"], "'/no/such/dir' does not exist"),
    ],
)
def test_cli_user_mistakes_end_in_one_line_before_loading(extra, message, capsys):
    assert main(["explain", *extra]) == 2  # no MODEL: the default backbone would be loaded if checks came later
    err = capsys.readouterr().err
    assert err.startswith("grace: error: ") and message in err and "Traceback" not in err


@pytest.mark.real_backbone
def test_contributions_are_exact_on_the_default_backbone():
    from grace_st import build_grace_model

    model = build_grace_model(max_new_tokens=24, device="cpu")
    explanations = explain_match(model, QUERY, DOCUMENTS)
    worst = _check_exact(model, explanations)
    print(f"default backbone: max |sum - score| = {worst:.2e}")
    for explanation in explanations:
        assert explanation.query_rationale and explanation.document_rationale
        assert {s for _, s, _ in explanation.contributions} == {
            "query_text",
            "template",
            "query_rationale",
            "document_text",
            "document_rationale",
        }
