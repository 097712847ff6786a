"""The ``grace`` command line: ``grace encode`` and ``grace build``.

Every user mistake (a missing file, an unknown model, an empty text) ends with one ``grace: error: ...`` line that
names the value and the fix, and exit status 2; never a stack trace from inside transformers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grace",
        description="GRACE embeddings: a causal LM writes a rationale about each text, then mean-pools its own "
        "hidden states over the text and the rationale into an L2-normalised vector.",
    )
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
    encode.add_argument("--batch-size", type=int, default=16, help="texts per generation batch (default: 16)")
    encode.add_argument("--max-new-tokens", type=int, help="override the model's rationale length cap for this run")
    encode.add_argument("--device", help="torch device, e.g. cpu or cuda (default: automatic)")

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
    from . import cli_eval, cli_push

    return {"eval": (cli_eval.add_parser, cli_eval.run), "push": (cli_push.add_parser, cli_push.run)}


def read_texts(path: Path) -> list[str]:
    """Texts from a .txt (one per line) or .jsonl (field 'text') file."""
    if not path.is_file():
        raise FileNotFoundError(f"No such file: '{path}'. Pass an existing .txt or .jsonl file to --file.")
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix == ".jsonl":
        texts = []
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(
                        f"{path}:{number} is not valid JSON ({exc.msg}). Fix or remove that line."
                    ) from exc
                if not isinstance(record, dict) or "text" not in record:
                    raise ValueError(f"{path}:{number} has no 'text' field. Each JSON line needs {{\"text\": ...}}.")
                texts.append(record["text"])
        return texts
    texts = [line for line in lines if line.strip()]
    if len(texts) < len(lines):
        print(f"grace: skipped {len(lines) - len(texts)} blank lines in {path}", file=sys.stderr)
    return texts


def _write_jsonl(records: list[dict[str, Any]], output: Path | None) -> None:
    if output is None:
        for record in records:
            print(json.dumps(record, ensure_ascii=False))
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, output)  # atomic: a reader never sees half a file


def run_encode(args: argparse.Namespace) -> None:
    from .loading import load_grace_model
    from .rationales import encode_with_rationales

    texts = args.text if args.text is not None else read_texts(args.file)
    if not texts:
        raise ValueError(f"No texts to encode in '{args.file}'.")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be a positive integer, got {args.batch_size}.")
    model = load_grace_model(args.model, device=args.device)
    if args.max_new_tokens is not None:
        model[0].max_new_tokens = args.max_new_tokens
    encoded = encode_with_rationales(
        model,
        texts,
        prompt_name=args.prompt_name,
        batch_size=args.batch_size,
        show_progress_bar=len(texts) > args.batch_size,
    )
    _write_jsonl([item.to_json() for item in encoded], args.output)
    if args.show_rationales:
        for item in encoded:
            print(
                f"\n{item.text}\n  rationale: {item.rationale}\n  embedding: {item.embedding.shape[0]} dims",
                file=sys.stderr,
            )
    if args.output is not None:
        print(f"grace: wrote {len(encoded)} embeddings to {args.output}", file=sys.stderr)


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
    from .backbones import BackboneNotFoundError
    from .push import PushError

    try:
        runners = {"encode": run_encode, "build": run_build}
        runners.update({name: entry[1] for name, entry in _extra_commands().items()})
        runners[args.command](args)
    except (BackboneNotFoundError, FileNotFoundError, FileExistsError, ValueError, TypeError, PushError) as exc:
        print(f"grace: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
