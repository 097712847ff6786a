"""Peak memory of an mteb-style corpus encoding (``GraceEncoder.encode_texts``) at 5,000 and 50,000 documents.

An MTEB retrieval corpus is 10k to millions of documents, and each one gets a rationale; memory that grows with the
corpus makes a real evaluation impossible. Each size runs in a fresh process (``GraceEncoder`` with an encoding
cache in a temporary file, as an evaluation would use it) and its peak RSS is read from the kernel when it exits
(``os.wait4``), from outside. The model is :mod:`encode_memory`'s tiny random Llama (hidden size 64, the default
backbone's tokenizer and chat template), so the run takes minutes and measures the encoder's working set rather
than a large model's weights. Documents are distinct WordNet definitions; rationales are ``--max-new-tokens`` long
(the random model rarely stops early; the lengths generated for the first 256 documents are reported).

    python benchmarks/eval_memory.py                               # 5,000 and 50,000 documents
    python benchmarks/eval_memory.py --sizes 200 2000              # a quick check
    python benchmarks/eval_memory.py --python ../old/.venv/bin/python   # another checkout's grace_st, same model

The last line is JSON: ``{"peak_rss_mb": {"5000": ..., "50000": ...}, "ratio": ...}`` (largest over smallest).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from encode_memory import tiny_backbone  # noqa: E402


CHILD = """
import json, sys
from grace_st import build_grace_model
from grace_st.mteb_encoder import GraceEncoder
backbone, texts_file, cache, max_new_tokens, batch_size = sys.argv[1:]
texts = json.loads(open(texts_file, encoding="utf-8").read())
model = build_grace_model(backbone, device="cpu", max_new_tokens=int(max_new_tokens))
vectors = GraceEncoder(model, cache=cache).encode_texts(texts, prompt=None, batch_size=int(batch_size))
assert vectors.shape[0] == len(texts)
"""


def run_child(python: str, backbone: Path, texts: Path, cache: Path, max_new_tokens: int, batch: int) -> tuple:
    """Peak RSS (MB) and seconds of one encoding process."""
    argv = [python, "-c", CHILD, str(backbone), str(texts), str(cache), str(max_new_tokens), str(batch)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    # run outside any checkout, so `-c` imports the interpreter's own grace_st, not the one in the current folder
    process = subprocess.Popen(argv, env=env, cwd=cache.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"the encoding process failed:\n{process.stderr.read().decode()[-3000:]}")
    return usage.ru_maxrss / 1024, seconds


def rationale_lengths(backbone: Path, documents: list[str], max_new_tokens: int) -> tuple[int, float]:
    """Shortest and mean generated rationale, in tokens (up to and including an end token), over ``documents``."""
    from grace_st import build_grace_model

    model = build_grace_model(str(backbone), device="cpu", max_new_tokens=max_new_tokens)
    lengths = [int(out["rationale_mask"].sum()) for out in model.encode(documents, output_value=None)]
    return min(lengths), sum(lengths) / len(lengths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 50000])
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--python", default=sys.executable, help="interpreter whose grace_st is measured")
    args = parser.parse_args()
    from grace_st.wordnet import load_synsets

    documents = list(dict.fromkeys(synset.definition for synset in load_synsets()))
    if max(args.sizes) > len(documents):
        raise SystemExit(f"WordNet has {len(documents)} distinct definitions; ask for at most that many documents.")
    with tempfile.TemporaryDirectory(prefix="grace-eval-memory-") as tmp:
        folder = tiny_backbone(Path(tmp) / "tiny")
        shortest, mean = rationale_lengths(folder, documents[:256], args.max_new_tokens)
        print(f"rationales of the first 256 documents: {shortest} tokens at least, {mean:.1f} on average", flush=True)
        rows = []
        for size in args.sizes:
            texts, cache = Path(tmp) / f"texts-{size}.json", Path(tmp) / f"cache-{size}.sqlite"
            texts.write_text(json.dumps(documents[:size]), encoding="utf-8")
            rss, seconds = run_child(args.python, folder, texts, cache, args.max_new_tokens, args.batch_size)
            rows.append({"documents": size, "peak_rss_mb": round(rss, 1), "seconds": round(seconds, 1)})
            print(f"{size} documents: peak RSS {rss:.0f} MB, {seconds:.0f} s", flush=True)
    print("| documents | peak RSS MB | seconds |\n|---|---|---|")
    for row in rows:
        print(f"| {row['documents']} | {row['peak_rss_mb']:.0f} | {row['seconds']:.0f} |")
    ratio = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    print(json.dumps({"peak_rss_mb": {str(r["documents"]): r["peak_rss_mb"] for r in rows}, "ratio": round(ratio, 3)}))


if __name__ == "__main__":
    main()
