"""``grace explain --query Q --document D [--document D2 ...] [MODEL]``: why a query and documents match.

For each document: the cosine score, both rationales and the pooled tokens that moved the score most, marked by
where they come from (see :mod:`grace_st.explain`). ``--json`` prints one JSON object per document instead (every
pooled token's contribution, in sequence order); ``--html F`` also writes a page with every token shaded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from .cli import _MODEL_HELP, add_trust_remote_code, load_for_command
from .errors import GraceUserError


def add_parser(commands: argparse._SubParsersAction) -> None:
    explain = commands.add_parser(
        "explain",
        help="show why a query matches documents: score, rationales, and each token's share of the score",
        description="Split each query-document cosine score exactly into per-token contributions (query text, "
        "query rationale, document text, document rationale, template glue); they add up to the score.",
    )
    explain.add_argument("model", nargs="?", metavar="MODEL", help=_MODEL_HELP)
    explain.add_argument("--query", required=True, metavar="Q", help="the query text (encoded with the query prompt)")
    explain.add_argument(
        "--document", required=True, action="append", metavar="D", help="a document text; repeat for more"
    )
    explain.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per document: query, document, score, query_rationale, document_rationale, "
        "contributions ([token, source, value] for every pooled token, in sequence order), query_tokens",
    )
    explain.add_argument("--html", type=Path, metavar="F", help="also write a page with tokens shaded by contribution")
    explain.add_argument(
        "--top-k", type=int, default=10, help="contributions listed per document (text and HTML; default: 10)"
    )
    explain.add_argument("--max-new-tokens", type=int, help="override the model's rationale length cap for this run")
    explain.add_argument("--device", help="torch device, e.g. cpu or cuda (default: automatic)")
    add_trust_remote_code(explain)


def run(args: argparse.Namespace) -> None:
    """Check the arguments, then explain, then print and write what was asked for."""
    _check_args(args)
    from .explain import explain_match

    model = load_for_command(args)
    explanations = explain_match(model, args.query, args.document)
    if args.json:
        for explanation in explanations:
            print(json.dumps(explanation.to_json(), ensure_ascii=False))
    else:
        print(format_explanations(explanations, args.top_k))
    if args.html is not None:
        from .explain_html import render_html

        _write_text(args.html, render_html(explanations, top_k=args.top_k))
        print(f"grace: wrote the explanation page to {args.html}", file=sys.stderr)


def _check_args(args: argparse.Namespace) -> None:
    """User mistakes found before the model is loaded, each naming the value and the fix."""
    if not args.query.strip():
        raise GraceUserError(f"--query {args.query!r} is empty. Pass the query text, e.g. --query 'what is a cat?'.")
    for document in args.document:
        if not document.strip():
            raise GraceUserError(f"--document {document!r} is empty. Pass a non-empty document text.")
    if args.top_k < 1:
        raise GraceUserError(f"--top-k must be a positive integer, got {args.top_k}.")
    if args.html is not None and not args.html.parent.is_dir():
        raise GraceUserError(f"--html {args.html}: the folder '{args.html.parent}' does not exist. Create it first.")


def format_explanations(explanations: list[Any], top_k: int) -> str:
    """Terminal text: per document, score, texts, rationales and the ``top_k`` largest contributions.

    Texts are shown on one line with control characters removed; tokens with visible whitespace (``·`` space,
    ``↵`` newline).
    """
    from .terminal_text import one_line, show_token

    lines = []
    for number, e in enumerate(explanations, 1):
        lines += [
            f"Document {number}: score {e.score:.4f}",
            f"  query:              {one_line(e.query)}",
            f"  query rationale:    {one_line(e.query_rationale) or '(none)'}",
            f"  document:           {one_line(e.document)}",
            f"  document rationale: {one_line(e.document_rationale) or '(none)'}",
            f"  top {min(top_k, len(e.contributions))} of {len(e.contributions)} token contributions "
            f"(all {len(e.contributions)} sum to the score):",
        ]
        lines += [f"    {c.value:+.4f}  {c.source:<18}  {show_token(c.token)}" for c in e.top(top_k)]
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary sibling, then rename it over ``path``: never a half-written page."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
