"""Peak memory of ``grace encode --file`` at 1,000 and 10,000 texts: streaming keeps it flat.

Each size runs the real command line in a fresh process and reads that process's peak RSS from the kernel
(``os.wait4``). The model is a tiny random Llama with the default backbone's tokenizer and chat template, so the
run takes minutes and measures the encoder's working set rather than a large model's weights; the texts are WordNet
definitions.

    python benchmarks/encode_memory.py                 # 1,000 and 10,000 texts
    python benchmarks/encode_memory.py --sizes 200 2000 --max-new-tokens 4
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


def tiny_backbone(folder: Path) -> Path:
    """A 2-layer random Llama (hidden size 64) with the embedded SmolLM2's tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from grace_st import embedded_backbone_path

    tokenizer = AutoTokenizer.from_pretrained(embedded_backbone_path())
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def run_encode(model: Path, texts: Path, output: Path, max_new_tokens: int) -> tuple[float, float]:
    """Peak RSS (MB) and seconds of one ``grace encode --file`` process."""
    argv = [sys.executable, "-m", "grace_st.cli", "encode", str(model), "--file", str(texts)]
    argv += ["--output", str(output), "--max-new-tokens", str(max_new_tokens), "--batch-size", "32"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"grace encode failed:\n{process.stderr.read().decode()[-3000:]}")
    return usage.ru_maxrss / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--max-new-tokens", type=int, default=8)
    args = parser.parse_args()
    from grace_st.wordnet import load_synsets

    definitions = [synset.definition for synset in load_synsets()]
    with tempfile.TemporaryDirectory(prefix="grace-memory-") as tmp:
        folder = tiny_backbone(Path(tmp) / "tiny")
        rows = []
        for size in args.sizes:
            texts = Path(tmp) / f"texts-{size}.txt"
            texts.write_text("\n".join(definitions[i % len(definitions)] for i in range(size)) + "\n")
            output = Path(tmp) / f"out-{size}.jsonl"
            rss, seconds = run_encode(folder, texts, output, args.max_new_tokens)
            lines = sum(1 for _ in output.open())
            rows.append({"texts": size, "peak_rss_mb": round(rss, 1), "seconds": round(seconds, 1), "lines": lines})
            print(f"{size} texts: peak RSS {rss:.0f} MB, {seconds:.0f} s, {lines} lines written", flush=True)
    print("| texts | peak RSS MB | seconds |\n|---|---|---|")
    for r in rows:
        print(f"| {r['texts']} | {r['peak_rss_mb']:.0f} | {r['seconds']:.0f} |")
    print(
        json.dumps(
            {
                "peak_rss_mb": {r["texts"]: r["peak_rss_mb"] for r in rows},
                "ratio_largest_to_smallest": round(rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
