"""Why two texts matched: a GRACE cosine score split exactly into per-token contributions.

A GRACE vector is ``u = mean_q / |mean_q|`` with ``mean_q = (1/n_q) sum_t h_t`` over the ``n_q`` pooled tokens of
``[prompt | rationale]`` (see ``modeling/spans.py``). The score of a query and a document is ``u . v``, and since
``u . v = 1/2 (mean_q . v) / |mean_q| + 1/2 (mean_d . u) / |mean_d|``, it is linear in the pooled hidden states:

- each pooled query token ``t`` contributes ``1/2 (h_t . v) / (n_q |mean_q|)``,
- each pooled document token ``t`` contributes ``1/2 (h_t . u) / (n_d |mean_d|)``,

and the contributions add up to the score, with nothing left over. Each side's tokens add up to exactly half of it
(``1/2 u . v``): what an explanation shows is how each half is spread over the tokens. The hidden states are the
module's own outputs from ``encode_query`` / ``encode_document``, so what is explained is the very vector those
return.

Each token is marked by where it comes from: ``query_text`` / ``document_text`` (the text itself), ``template``
(the chat template's glue after the text, which GRACE pools), and ``query_rationale`` / ``document_rationale``
(what the model wrote, its first end token included). Contributions keep sequence order (query tokens, then
document tokens), so they read as the texts; :meth:`Explanation.top` orders them by size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from sentence_transformers import SentenceTransformer

from .errors import GraceUserError
from .model_ids import is_grace_model
from .role_encoding import Role, decode_rationale, encode_role, role_prompt


SOURCES: tuple[str, ...] = ("query_text", "query_rationale", "document_text", "document_rationale", "template")


class Contribution(NamedTuple):
    """One pooled token's share of the score; a tuple, so it is ``[token, source, value]`` in JSON.

    Attributes:
        token: the token as text (``tokenizer.decode([id])``, whitespace and special tokens kept as they are).
        source: one of :data:`SOURCES`.
        value: its share of the cosine score.
    """

    token: str
    source: str
    value: float


@dataclass
class Explanation:
    """The score of one query-document pair, both rationales, and every pooled token's contribution.

    ``sum(c.value for c in contributions) == score`` up to float rounding. The first ``query_tokens``
    contributions are the query's pooled tokens, the rest the document's, each in sequence order.
    """

    query: str
    document: str
    score: float
    query_rationale: str
    document_rationale: str
    contributions: list[Contribution]
    query_tokens: int

    def sides(self) -> tuple[list[Contribution], list[Contribution]]:
        """The query's and the document's contributions, each in sequence order."""
        return self.contributions[: self.query_tokens], self.contributions[self.query_tokens :]

    def top(self, k: int) -> list[Contribution]:
        """The ``k`` contributions largest in absolute value, largest first."""
        return sorted(self.contributions, key=lambda c: abs(c.value), reverse=True)[:k]

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "document": self.document,
            "score": self.score,
            "query_rationale": self.query_rationale,
            "document_rationale": self.document_rationale,
            "contributions": [list(c) for c in self.contributions],
            "query_tokens": self.query_tokens,
        }


def explain_match(
    model: SentenceTransformer, query: str, documents: list[str] | str, *, batch_size: int = 16
) -> list[Explanation]:
    """Explain the cosine score between ``query`` and each of ``documents``, token by token.

    The query is encoded with ``encode_query`` and the documents with ``encode_document``, so each score equals
    ``model.similarity(model.encode_query(query), model.encode_document(document))``.
    """
    documents = [documents] if isinstance(documents, str) else list(documents)
    _check_inputs(model, query, documents)
    query_out = encode_role(model, [query], "query", batch_size=batch_size)[0]
    document_outs = encode_role(model, documents, "document", batch_size=batch_size)
    query_side = _Side(model, query_out, "query", query)
    explanations = []
    for document, document_out in zip(documents, document_outs, strict=True):
        document_side = _Side(model, document_out, "document", document)
        u, v = query_side.unit, document_side.unit
        explanations.append(
            Explanation(
                query=query,
                document=document,
                score=float(u @ v),
                query_rationale=query_side.rationale,
                document_rationale=document_side.rationale,
                contributions=query_side.contributions(v) + document_side.contributions(u),
                query_tokens=len(query_side.tokens),
            )
        )
    return explanations


class _Side:
    """One encoded text: its pooled hidden states, their token texts and sources, and its unit vector."""

    def __init__(self, model: SentenceTransformer, output: dict[str, Any], role: Role, text: str) -> None:
        generator = model[0]
        mask = output["attention_mask"].bool().cpu()  # (P + G,) the pooled span
        prompt_len = output["input_ids"].shape[0]
        ids = torch.cat([output["input_ids"], output["rationale_ids"]]).cpu()
        glue = len(generator.template(role_prompt(model, role) or generator.instruction).suffix_ids)
        positions = mask.nonzero().flatten().tolist()
        self.tokens = [generator.tokenizer.decode([int(ids[p])]) for p in positions]
        self.sources = [_source(p, prompt_len, glue, role) for p in positions]
        self.hidden = output["token_embeddings"].detach().cpu().double()[mask]  # (n, H)
        self.unit = output["sentence_embedding"].detach().cpu().double()  # what encode_query/_document return
        self.rationale = decode_rationale(model, output)
        self.text = text

    def contributions(self, other_unit: torch.Tensor) -> list[Contribution]:
        """This side's tokens' shares: ``1/2 (h_t . other) / (n |mean|)``."""
        n = self.hidden.shape[0]
        norm = self.hidden.mean(dim=0).norm()
        values = 0.5 * (self.hidden @ other_unit) / (n * norm)
        return [Contribution(t, s, float(x)) for t, s, x in zip(self.tokens, self.sources, values, strict=True)]


def _source(position: int, prompt_len: int, glue: int, role: Role) -> str:
    """Where the token at ``position`` of ``[left padding | prefix | text | glue | rationale]`` comes from."""
    if position >= prompt_len:
        return f"{role}_rationale"
    return "template" if position >= prompt_len - glue else f"{role}_text"


def _check_inputs(model: SentenceTransformer, query: Any, documents: list[Any]) -> None:
    """Refuse what cannot be explained exactly, naming the value and the fix."""
    if not documents:
        raise GraceUserError("No documents to explain the query against. Pass at least one document.")
    for role, text in [("query", query)] + [("document", d) for d in documents]:
        if not isinstance(text, str) or not text.strip():
            raise GraceUserError(f"The {role} {text!r} is empty or not a string. Pass a non-empty text.")
    modules = list(model)
    first, pooling, last = (modules + [None, None, None])[:3]
    if (
        len(modules) != 3
        or not is_grace_model(model)
        or getattr(pooling, "pooling_mode", None) not in ("mean", ("mean",))
        or not getattr(pooling, "include_prompt", True)
        or type(last).__name__ != "Normalize"
    ):
        names = " -> ".join(type(m).__name__ for m in modules)
        raise GraceUserError(
            f"Only a GRACE model (RationaleGenerator -> Pooling(mean) -> Normalize) can be explained exactly; this "
            f"model is {names}. Build one with `grace build` or grace_st.build_grace_model."
        )
