"""A self-contained HTML page of :class:`~grace_st.explain.Explanation` objects: tokens shaded by contribution.

Each pair gets its score, its texts and rationales, then the query side's and the document side's pooled tokens in
reading order, each on a background whose colour says the sign of its contribution (green raises the score, red
lowers it) and whose strength says its size relative to the largest one of that pair; an underline colour says
where the token comes from. A table lists the largest contributions. The page has no script and loads nothing, and
every text on it (texts, rationales, tokens) goes through ``html.escape``, so a text holding markup shows as text.
"""

from __future__ import annotations

from html import escape

from .explain import SOURCES, Contribution, Explanation


_SOURCE_COLOURS = {
    "query_text": "#1f77b4",
    "query_rationale": "#9467bd",
    "document_text": "#ff7f0e",
    "document_rationale": "#8c564b",
    "template": "#7f7f7f",
}

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; max-width: 70em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; border-top: 1px solid #ccc; padding-top: 1em; }
dt { font-weight: bold; margin-top: .4em; } dd { margin-left: 1.5em; white-space: pre-wrap; }
.tokens { font-family: ui-monospace, monospace; white-space: pre-wrap; line-height: 1.9; border: 1px solid #ddd;
  padding: .5em; }
.tok { border-bottom: 3px solid; padding: 0 1px; }
.legend span { margin-right: 1.2em; border-bottom: 3px solid; }
table { border-collapse: collapse; } td, th { border: 1px solid #ddd; padding: .15em .5em; text-align: left; }
td.num { text-align: right; font-family: ui-monospace, monospace; }
"""


def render_html(explanations: list[Explanation], *, top_k: int = 10) -> str:
    """The whole page as a string (UTF-8, no external resources)."""
    legend = "".join(f'<span style="border-color:{_SOURCE_COLOURS[s]}">{escape(s)}</span>' for s in SOURCES)
    sections = "".join(_section(i, e, top_k) for i, e in enumerate(explanations, 1))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>GRACE: why these texts match</title><style>{_STYLE}</style></head><body>"
        "<h1>GRACE: why these texts match</h1>"
        "<p>Each pooled token's share of the cosine score: the shares add up to the score, each side's to half of it. "
        "Background: green raises the score, red lowers it, stronger is larger. Underline: where the token comes "
        "from. Hover a token for its value.</p>"
        f'<p class="legend">{legend}</p>{sections}</body></html>\n'
    )


def _section(number: int, explanation: Explanation, top_k: int) -> str:
    scale = max((abs(c.value) for c in explanation.contributions), default=0.0) or 1.0
    query, document = explanation.sides()
    rows = "".join(
        f"<tr><td><code>{escape(c.token)}</code></td><td>{escape(c.source)}</td>"
        f'<td class="num">{c.value:+.4f}</td></tr>'
        for c in explanation.top(top_k)
    )
    fields = (
        ("Query", explanation.query),
        ("Query rationale", explanation.query_rationale),
        ("Document", explanation.document),
        ("Document rationale", explanation.document_rationale),
    )
    details = "".join(f"<dt>{name}</dt><dd>{escape(text) or '<em>(none)</em>'}</dd>" for name, text in fields)
    return (
        f'<section class="pair"><h2>Document {number}: score <span class="score">{explanation.score:.4f}</span>'
        f"</h2><dl>{details}</dl>"
        f'<h3>Query side ({_total(query):+.4f})</h3><div class="tokens query">{_tokens(query, scale)}</div>'
        f"<h3>Document side ({_total(document):+.4f})</h3>"
        f'<div class="tokens document">{_tokens(document, scale)}</div>'
        f"<h3>Largest contributions</h3><table><tr><th>token</th><th>source</th><th>value</th></tr>{rows}</table>"
        "</section>"
    )


def _total(contributions: list[Contribution]) -> float:
    return sum(c.value for c in contributions)


def _tokens(contributions: list[Contribution], scale: float) -> str:
    return "".join(_token_span(*c, scale) for c in contributions)


def _token_span(token: str, source: str, value: float, scale: float) -> str:
    strength = min(1.0, abs(value) / scale) * 0.85
    rgb = "34,139,34" if value >= 0 else "214,39,40"
    return (
        f'<span class="tok" data-source="{escape(source)}" data-value="{value:.6g}" '
        f'title="{escape(source)} {value:+.5f}" '
        f'style="background-color:rgba({rgb},{strength:.3f});border-color:{_SOURCE_COLOURS[source]}">'
        f"{escape(token)}</span>"
    )
