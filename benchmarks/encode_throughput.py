"""Encode throughput of GRACE on the embedded default backbone: texts/s and generated tokens/s per batch size.

Texts are real sentences: WordNet 3.0 glosses with their example sentences (Debian package ``wordnet-base``), or
lines of ``--file``. Greedy decoding, a fixed ``--max-new-tokens``, ``--threads`` torch threads. Each batch size
encodes the same texts once after a warm-up batch, timed with ``time.perf_counter``.

    python benchmarks/encode_throughput.py --batch-sizes 1 16 --max-new-tokens 64
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


WORDNET = Path("/usr/share/wordnet/data.noun")


def wordnet_texts(count: int) -> list[str]:
    """``count`` noun glosses (definition plus examples), spread evenly over the file, in file order."""
    if not WORDNET.exists():
        raise SystemExit("WordNet is not installed: run `apt-get install wordnet-base`, or pass --file.")
    glosses = [line.split(" | ", 1)[1].strip() for line in WORDNET.read_text().splitlines() if " | " in line]
    step = max(1, len(glosses) // count)
    return glosses[::step][:count]


def measure(model, texts: list[str], batch_size: int) -> dict[str, float]:
    model.encode(texts[:batch_size], batch_size=batch_size)  # warm-up
    start = time.perf_counter()
    outputs = model.encode(texts, batch_size=batch_size, output_value=None)
    seconds = time.perf_counter() - start
    generated = sum(int(out["rationale_mask"].sum()) for out in outputs)
    return {
        "batch_size": batch_size,
        "texts": len(texts),
        "seconds": round(seconds, 2),
        "texts_per_s": round(len(texts) / seconds, 3),
        "generated_tokens_per_s": round(generated / seconds, 1),
        "mean_rationale_tokens": round(generated / len(texts), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument(
        "--texts-per-batch-size",
        type=int,
        nargs="+",
        default=[8, 32],
        help="how many texts each batch size encodes (one value per batch size)",
    )
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--file", type=Path, help="one text per line instead of WordNet")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from grace_st import build_grace_model

    model = build_grace_model(max_new_tokens=args.max_new_tokens, device="cpu")
    pool = max(args.texts_per_batch_size)
    texts = args.file.read_text().splitlines()[:pool] if args.file else wordnet_texts(pool)
    for batch_size, count in zip(args.batch_sizes, args.texts_per_batch_size, strict=True):
        print(json.dumps(measure(model, texts[:count], batch_size)), flush=True)


if __name__ == "__main__":
    main()
