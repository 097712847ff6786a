"""How much slower a saved folder encodes where grace-st is not installed: the library's single pass against the
folder's own public-API path (``generate``, then one forward), side by side in one run, same model, same texts.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/folder_fallback.py [--texts 64] [--batch-size 32]

Prints one JSON line: texts/s of each path, their ratio, and whether the rationales are identical and the vectors
within 1e-4 cosine. The fallback is what ``SentenceTransformer(folder, trust_remote_code=True)`` runs without the
library (``two_pass_generation()`` selects it in-process; ``tests/test_remote_code.py`` runs it where grace_st
cannot be imported at all).
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()

    import torch

    from grace_st import build_grace_model
    from grace_st.rationale_generator import two_pass_generation
    from grace_st.wordnet import wordnet_triples

    texts = [row["positive"] for row in wordnet_triples("heldout", limit=args.texts)]
    model = build_grace_model(max_new_tokens=args.max_new_tokens, device="cpu")
    model.encode(texts[:2], batch_size=2)  # warm-up: kernels, allocator

    def run() -> tuple[float, list]:
        start = time.perf_counter()
        out = model.encode(texts, batch_size=args.batch_size, output_value=None)
        return time.perf_counter() - start, out

    fast_s, fast = run()
    with two_pass_generation():
        slow_s, slow = run()
    same = all(
        a["rationale_ids"][a["rationale_mask"].bool()].tolist()
        == b["rationale_ids"][b["rationale_mask"].bool()].tolist()
        for a, b in zip(fast, slow, strict=True)
    )
    cos = min(
        float(torch.dot(a["sentence_embedding"], b["sentence_embedding"])) for a, b in zip(fast, slow, strict=True)
    )
    print(
        json.dumps(
            {
                "texts": len(texts),
                "batch_size": args.batch_size,
                "max_new_tokens": args.max_new_tokens,
                "single_pass_texts_per_s": round(len(texts) / fast_s, 3),
                "folder_fallback_texts_per_s": round(len(texts) / slow_s, 3),
                "single_pass_speedup": round(slow_s / fast_s, 2),
                "same_rationales": same,
                "min_cosine": round(cos, 6),
            }
        )
    )


if __name__ == "__main__":
    main()
