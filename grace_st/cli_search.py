"""``grace search CORPUS_FILE --query Q [--top-k K] [MODEL]``: the corpus texts closest to a query.

The corpus is encoded through the encoding cache (``$GRACE_CACHE``, else ``~/.cache/grace``), so searching the same
corpus again with the same model writes no rationale; only a new query is generated.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli import _MODEL_HELP, add_trust_remote_code, load_for_command
from .errors import GraceUserError


def add_parser(commands: argparse._SubParsersAction) -> None:
    search = commands.add_parser(
        "search",
        help="rank the texts of a corpus file against a query; the corpus is encoded once, then cached",
        description="Rank the texts of CORPUS_FILE by GRACE cosine score to a query and print the best with their "
        "rationales. Encodings are cached, so a second search over the same corpus generates nothing for it.",
    )
    search.add_argument(
        "corpus",
        type=Path,
        metavar="CORPUS_FILE",
        help="a .txt file (one text per line; blank lines skipped) or a .jsonl file with a 'text' field on each line",
    )
    search.add_argument("model", nargs="?", metavar="MODEL", help=_MODEL_HELP)
    search.add_argument("--query", required=True, metavar="Q", help="the query text (encoded with the query prompt)")
    search.add_argument("--top-k", type=int, default=10, metavar="K", help="documents to show (default: 10)")
    search.add_argument("--batch-size", type=int, default=16, help="texts per generation batch (default: 16)")
    search.add_argument("--max-new-tokens", type=int, help="override the model's rationale length cap for this run")
    search.add_argument("--device", help="torch device, e.g. cpu or cuda (default: automatic)")
    add_trust_remote_code(search)


def run(args: argparse.Namespace) -> None:
    """Check the arguments, search, print the hits (control characters removed)."""
    _check_args(args)
    from .rationale_cache import EncodingCache
    from .search import search_corpus
    from .streaming import iter_texts
    from .terminal_text import one_line

    model = load_for_command(args)
    result = search_corpus(
        model, args.query, iter_texts(args.corpus), top_k=args.top_k, cache=EncodingCache(), batch_size=args.batch_size
    )
    print(f"query: {one_line(result.query)}")
    print(f"  rationale: {one_line(result.query_rationale) or '(none)'}")
    for rank, hit in enumerate(result.hits, 1):
        print(f"\n{rank}. {hit.score:.4f}  (text #{hit.index + 1})  {one_line(hit.text)}")
        print(f"   rationale: {one_line(hit.rationale) or '(none)'}")
    cached = result.corpus_size + 1 - result.texts_generated
    print(
        f"grace: encoded {result.texts_generated} texts (the query included); {cached} came from the encoding cache",
        file=sys.stderr,
    )


def _check_args(args: argparse.Namespace) -> None:
    """User mistakes found before the model is loaded, each naming the value and the fix."""
    if not args.corpus.is_file():
        raise GraceUserError(
            f"No such corpus file: '{args.corpus}'. Pass an existing .txt (one text per line) or .jsonl (a 'text' "
            "field on each line) file as CORPUS_FILE."
        )
    if not args.query.strip():
        raise GraceUserError(f"--query {args.query!r} is empty. Pass the query text, e.g. --query 'what is a cat?'.")
    for name in ("top_k", "batch_size"):
        if getattr(args, name) < 1:
            flag = f"--{name.replace('_', '-')}"
            raise GraceUserError(f"{flag} must be a positive integer, got {getattr(args, name)}.")
