"""``grace encode-ray``: encode Parquet or JSON-lines files with a Ray actor pool, writing Parquet.

Kept apart from ``grace encode`` because it needs the optional ``ray`` extra and writes a folder of Parquet files
(one per block, Ray Data's layout) rather than one JSON-lines stream. Nothing here is imported until the command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "encode-ray",
        help="embed Parquet/JSON-lines files on a Ray cluster (or a local Ray); write Parquet",
        description="Embed the 'text' column of Parquet or JSON-lines files with a pool of GRACE actors (Ray Data), "
        "writing Parquet files with columns text, rationale and embedding. Ray starts with usage statistics off "
        "and no dashboard.",
    )
    parser.add_argument("model", metavar="MODEL", help="a saved GRACE model folder or Hub id (each actor loads it)")
    parser.add_argument("--input", nargs="+", required=True, metavar="PATH", help="Parquet or .jsonl files or folders")
    parser.add_argument("--output", type=Path, required=True, metavar="DIR", help="folder to write Parquet files to")
    parser.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")
    parser.add_argument("--actors", type=int, help="actor pool size (default: one per free slot)")
    parser.add_argument("--gpus-per-actor", type=float, default=0, help="GPUs each actor holds (default: 0)")
    parser.add_argument("--cpus-per-actor", type=float, default=1, help="CPUs each actor holds (default: 1)")
    parser.add_argument("--address", help="a running Ray cluster to join (default: start a local Ray)")
    parser.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    parser.add_argument("--prompt-name", choices=["query", "document"], help="use the model's stored prompt")
    parser.add_argument("--batch-size", type=int, default=16, help="texts per generation batch (default: 16)")
    parser.add_argument("--max-new-tokens", type=int, help="override the model's rationale length cap")
    parser.add_argument("--vllm", action="store_true", help="generate with vLLM inside each (GPU) actor")
    parser.add_argument("--trust-remote-code", action="store_true", help="let a backbone run its own code")


def run(args: argparse.Namespace) -> None:
    from .atomic import atomic_directory
    from .errors import GraceUserError
    from .ray_encoding import IO_TASK_CPUS, encode_dataset, read_texts_dataset, start_local_ray

    for name in ("actors", "batch_size", "max_new_tokens", "num_cpus"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise GraceUserError(f"--{name.replace('_', '-')} must be a positive integer, got {value}.")
    if args.output.exists() and not args.overwrite:
        raise GraceUserError(f"'{args.output}' exists. Pass --overwrite to replace it, or choose another --output.")
    for path in args.input:
        if not Path(path).exists():
            raise GraceUserError(f"No such file or folder: '{path}'. Pass Parquet or .jsonl files to --input.")
    start_local_ray(args.address, num_cpus=args.num_cpus)
    dataset = encode_dataset(
        read_texts_dataset(args.input),
        args.model,
        actors=args.actors,
        gpus_per_actor=args.gpus_per_actor,
        cpus_per_actor=args.cpus_per_actor,
        prompt_name=args.prompt_name,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        use_vllm=args.vllm,
        trust_remote_code=args.trust_remote_code,
    )
    with atomic_directory(args.output) as staging:  # the folder appears complete, or not at all
        dataset.write_parquet(str(staging.path), ray_remote_args={"num_cpus": IO_TASK_CPUS})
    import pyarrow.parquet as pq

    rows = sum(pq.ParquetFile(file).metadata.num_rows for file in args.output.glob("*.parquet"))
    print(f"grace: wrote {rows} embeddings to {args.output}", file=sys.stderr)
