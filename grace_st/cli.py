"""The ``grace`` command line: ``grace encode`` and ``grace build``.

Every user mistake (a missing file, an unknown model, an empty text) ends with one ``grace: error: ...`` line that
names the value and the fix, and exit status 2; never a stack trace from inside transformers.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import GraceUserError
from .train import cli as train_cli


_MODEL_HELP = (
    "a saved GRACE model folder or Hub id, or any Hugging Face causal LM (wrapped untrained). "
    "Default: an untrained GRACE model on the embedded SmolLM2-135M-Instruct."
)


def _add_settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--instruction", help="system prompt (default: the GRACE reference prompt)")
    parser.add_argument(
        "--span",
        choices=["input_and_rationale", "rationale", "input"],
        help="pooled tokens (default: input_and_rationale)",
    )
    parser.add_argument("--layer", type=int, help="hidden-state layer to pool (default: -1, the last)")
    parser.add_argument("--max-new-tokens", type=int, help="rationale length cap (default: 256)")
    parser.add_argument(
        "--max-input-tokens",
        type=int,
        help="texts are cut to this many tokens (default: 1024, or less to fit the backbone's context)",
    )
    parser.add_argument("--sample", action="store_true", help="sample rationales instead of greedy decoding")
    parser.add_argument("--temperature", type=float, help="sampling temperature (with --sample)")
    parser.add_argument("--seed", type=int, help="sampling seed (with --sample)")


def load_for_command(args: argparse.Namespace) -> Any:
    """The model a command names (MODEL, ``--device``, ``--trust-remote-code``), with ``--max-new-tokens`` and
    ``--int8`` applied."""
    from .loading import load_grace_model

    model = load_grace_model(args.model, device=args.device, trust_remote_code=args.trust_remote_code)
    if getattr(args, "max_new_tokens", None) is not None:
        model[0].max_new_tokens = args.max_new_tokens
    if getattr(args, "int8", False):
        model[0].int8 = True
    return model


def add_trust_remote_code(parser: argparse.ArgumentParser) -> None:
    """The one switch that lets a model's own Python files run (off: a GRACE folder's files are never executed)."""
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let the model's backbone run custom code from its files (only for models whose code you have read; "
        "GRACE folders never need it)",
    )


def add_devices(parser: argparse.ArgumentParser) -> None:
    """``--devices``: one encoding process per device (sentence-transformers' multi-process encoding)."""
    parser.add_argument(
        "--devices",
        nargs="+",
        metavar="D",
        help="spread the texts over one process per device, e.g. cuda:0 cuda:1, or cpu cpu (same vectors as one "
        "process; the main process reads the input and writes the output and the cache)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grace",
        description="GRACE embeddings: a causal LM writes a rationale about each text, then mean-pools its own "
        "hidden states over the text and the rationale into an L2-normalised vector.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"grace {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    encode = commands.add_parser(
        "encode",
        help="embed texts; write one JSON line per text: text, rationale, embedding",
        description="Embed texts and write one JSON line per text with keys text, rationale and embedding.",
    )
    encode.add_argument("model", nargs="?", metavar="MODEL", help=_MODEL_HELP)
    source = encode.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", nargs="+", metavar="T", help="one or more texts")
    source.add_argument(
        "--file",
        type=Path,
        metavar="F",
        help="a .txt file (one text per line; blank lines skipped) or a .jsonl file with a 'text' field on each line",
    )
    encode.add_argument("--output", type=Path, metavar="OUT", help="JSON-lines output file (default: stdout)")
    encode.add_argument(
        "--show-rationales", action="store_true", help="also print each text and its rationale to stderr"
    )
    encode.add_argument("--prompt-name", choices=["query", "document"], help="use the model's stored prompt")
    encode.add_argument(
        "--batch-size",
        type=int,
        default=64,
        help="texts per generation batch; larger is faster, memory is capped by token_budget (default: 64)",
    )
    encode.add_argument(
        "--chunk-size",
        type=int,
        default=256,
        help="texts encoded, then written out, at a time; bounds memory on large files (default: 256)",
    )
    encode.add_argument("--max-new-tokens", type=int, help="override the model's rationale length cap for this run")
    encode.add_argument("--device", help="torch device, e.g. cpu or cuda (default: automatic)")
    encode.add_argument(
        "--int8",
        action="store_true",
        help="CPU only: int8 linear layers, about 1.6x faster, vectors and rationales differ a little from fp32 "
        "(see benchmarks/int8_quality.py for the measured quality; default: fp32)",
    )
    add_devices(encode)
    encode.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar over the whole input on stderr (default: only when stderr is a terminal)",
    )
    add_trust_remote_code(encode)

    build = commands.add_parser(
        "build",
        help="write an untrained GRACE model folder from any causal LM",
        description="Write an untrained GRACE sentence-transformers model folder from a Hugging Face causal LM.",
    )
    build.add_argument("output_dir", type=Path, metavar="OUT_DIR", help="folder to create")
    build.add_argument("--backbone", metavar="ID_OR_PATH", help="Hub id or local folder (default: embedded SmolLM2)")
    build.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it exists")
    _add_settings(build)
    for add_subparser, _ in _extra_commands().values():
        add_subparser(commands)
    train_cli.add_parser(commands)
    return parser


def _extra_commands() -> dict[str, tuple[Callable, Callable]]:
    """Subcommands that live in their own modules: name -> (add_parser(subparsers), run(args)).

    Those modules import nothing heavy at module level, so ``grace encode`` never pays for importing trl or mteb.
    """
    from . import cli_eval, cli_explain, cli_push, cli_ray, cli_search

    return {
        "encode-ray": (cli_ray.add_parser, cli_ray.run),
        "eval": (cli_eval.add_parser, cli_eval.run),
        "push": (cli_push.add_parser, cli_push.run),
        "explain": (cli_explain.add_parser, cli_explain.run),
        "search": (cli_search.add_parser, cli_search.run),
    }


_NO_TEXT = object()


def read_texts(path: Path) -> list[str]:
    """Texts from a .txt (one per line) or .jsonl (field 'text') file."""
    from .streaming import iter_texts

    return list(iter_texts(path))


def run_encode(args: argparse.Namespace) -> None:
    """Encode ``--text`` or a ``--file`` read lazily, writing each chunk of results as soon as it is done.

    With ``--output``, a rerun of the same command after a kill continues the finished part (see
    :mod:`grace_st.resumable_output`).
    """
    from itertools import chain

    from .atomic import check_writable
    from .multi_process import encoding_pool
    from .streaming import count_texts, encode_to_jsonl, iter_texts
    from .terminal import printable

    if args.output is not None:  # a folder or an unwritable place fails now, not after all the encoding
        check_writable(args.output)
    texts = iter(args.text) if args.text is not None else iter_texts(args.file)
    first = next(texts, _NO_TEXT)  # an empty or missing file fails before the model is loaded
    if first is _NO_TEXT:
        raise GraceUserError(f"No texts to encode in '{args.file}'.")
    for name in ("batch_size", "chunk_size"):
        if getattr(args, name) < 1:
            raise GraceUserError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}.")
    model = load_for_command(args)
    total = len(args.text) if args.text is not None else count_texts(args.file)

    def show(chunk: list) -> None:
        for item in chunk:
            text, rationale = printable(item.text), printable(item.rationale)
            print(f"\n{text}\n  rationale: {rationale}\n  embedding: {item.embedding.shape[0]} dims", file=sys.stderr)

    with encoding_pool(model, args.devices) as pool:
        count, resumed = encode_to_jsonl(
            model,
            chain([first], texts),
            args.output,
            chunk_size=args.chunk_size,
            batch_size=args.batch_size,
            prompt_name=args.prompt_name,
            pool=pool,
            total=total,
            show_progress_bar=args.progress,
            on_chunk=show if args.show_rationales else None,
        )
    if args.output is not None:
        kept = f" ({resumed} kept from the interrupted run)" if resumed else ""
        print(f"grace: wrote {count} embeddings to {args.output}{kept}", file=sys.stderr)


def run_build(args: argparse.Namespace) -> None:
    from .build import build_grace_model

    names = ("instruction", "span", "layer", "max_new_tokens", "max_input_tokens", "temperature", "seed")
    settings = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if args.sample:
        settings["do_sample"] = True
    build_grace_model(args.backbone, args.output_dir, overwrite=args.overwrite, **settings)
    print(f"grace: wrote a GRACE model to {args.output_dir}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train"]:  # TRL's parser owns the training arguments (YAML config + overrides)
        return train_cli.main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # keep the terminal for GRACE's own messages
    from .errors import report_errors
    from .logs import log_to_console

    log_to_console()
    runners = {"encode": run_encode, "build": run_build}
    runners.update({name: entry[1] for name, entry in _extra_commands().items()})
    return report_errors(lambda: runners[args.command](args))


if __name__ == "__main__":
    raise SystemExit(main())
