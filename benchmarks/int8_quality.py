"""What the opt-in int8 path buys and costs: its speed and its held-out quality against fp32, side by side, one run.

int8 (``RationaleGenerator(int8=True)``, ``modeling/int8_linears.py``) changes the numbers the model computes, so
its rationales and vectors differ from fp32's; this measures by how much it matters, on the same model in one
process, alternating the two:

1. speed: ``model.encode`` of ``--texts`` WordNet texts (``encode_speed.py``'s, 64 new tokens by default) at
   ``--batch-size``, fp32 and int8 alternated ``--rounds`` times; the best round of each, their ratio, the largest
   cosine distance between a text's fp32 and int8 vectors and how many rationales differ;
2. quality: the held-out suite's **test** tasks (WordNet, man pages, docstrings; ``--max-queries`` queries each,
   nDCG@10 scored by mteb as ``cost_quality.py`` does, encoding cache off), every text written a rationale
   (``full``, ``--max-new-tokens``): nDCG@10 per task and mean for each, and int8 minus fp32 over every query with
   its 95 % paired-bootstrap interval (1,000 resamples, seeded). An interval that holds 0 is a loss the suite
   cannot tell from none.

Writes ``int8_quality.json`` and prints the markdown table.

    python benchmarks/int8_quality.py --output results/int8            # default backbone, about 10 min on 2 cores
    python benchmarks/int8_quality.py --model my-grace-folder --output results/int8_trained
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch


sys.path.insert(0, str(Path(__file__).parent))
from cost_quality import Meter, load_model, score, timed_encoder, versus, warm_up  # noqa: E402
from encode_speed import benchmark_texts, cpu_facts  # noqa: E402


def speed(model: Any, texts: list[str], batch_size: int, rounds: int) -> dict[str, Any]:
    """Best-of-``rounds`` texts/s of fp32 and int8 encoding, alternated, and how far int8's outputs move."""
    seconds: dict[bool, list[float]] = {False: [], True: []}
    outputs: dict[bool, list[dict[str, torch.Tensor]]] = {}
    for _ in range(rounds):
        for int8 in (False, True):
            model[0].int8 = int8
            start = time.perf_counter()
            outputs[int8] = model.encode(texts, batch_size=batch_size, output_value=None)
            seconds[int8].append(time.perf_counter() - start)
    model[0].int8 = False
    cosines = [
        float(torch.nn.functional.cosine_similarity(a["sentence_embedding"], b["sentence_embedding"], dim=0))
        for a, b in zip(outputs[False], outputs[True], strict=True)
    ]
    differ = sum(
        not torch.equal(a["rationale_ids"][a["rationale_mask"].bool()], b["rationale_ids"][b["rationale_mask"].bool()])
        for a, b in zip(outputs[False], outputs[True], strict=True)
    )
    fp32, int8 = len(texts) / min(seconds[False]), len(texts) / min(seconds[True])
    return {
        "fp32_texts_per_s": fp32,
        "int8_texts_per_s": int8,
        "int8_speedup": int8 / fp32,
        "seconds": {"fp32": seconds[False], "int8": seconds[True]},
        "max_cos_distance": 1 - min(cosines),
        "mean_cos_distance": 1 - statistics.fmean(cosines),
        "rationales_differ": differ,
        "texts": len(texts),
    }


def quality(model: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Held-out test nDCG@10 of fp32 and int8 on the same queries, and int8 - fp32 with its paired interval."""
    model[0].max_new_tokens = args.max_new_tokens
    meter, runs = Meter(model), {}
    for name, int8 in (("fp32", False), ("int8", True)):
        model[0].int8 = int8
        meter.reset()
        encoder = timed_encoder(model, meter, cache=False, role_modes="full")
        scores, per_query = score(encoder, "test", args.max_queries, args.batch_size)
        runs[name] = {
            "ndcg_at_10": scores,
            "mean_ndcg_at_10": statistics.fmean(scores.values()),
            "texts_per_second": meter.texts / meter.seconds if meter.seconds else float("nan"),
            "per_query": per_query,
        }
        print(f"{name}: mean nDCG@10 {runs[name]['mean_ndcg_at_10']:.4f}", flush=True)
    model[0].int8 = False
    return {**runs, "int8_minus_fp32": versus(runs["int8"]["per_query"], runs["fp32"]["per_query"])}


def markdown(report: dict[str, Any]) -> str:
    fast, good = report["speed"], report["quality"]
    tasks = list(good["fp32"]["ndcg_at_10"])
    diff = good["int8_minus_fp32"]
    names = " | ".join(task.removeprefix("GraceSuite").removesuffix("Retrieval") for task in tasks)
    batch = report["settings"]["batch_size"]
    lines = [
        f"| weights | texts/s (b={batch}) | {names} | mean nDCG@10 | int8 - fp32 [95% CI] |",
        "|---|---|" + "---|" * len(tasks) + "---|---|",
    ]
    for name in ("fp32", "int8"):
        run = good[name]
        interval = "" if name == "fp32" else f"{diff['diff']:+.3f} [{diff['ci_low']:+.3f}, {diff['ci_high']:+.3f}]"
        cells = " | ".join(f"{run['ndcg_at_10'][task]:.3f}" for task in tasks)
        rate, mean = fast[f"{name}_texts_per_s"], run["mean_ndcg_at_10"]
        lines.append(f"| {name} | {rate:.2f} | {cells} | {mean:.3f} | {interval} |")
    lines.append(
        f"\nint8 speedup {fast['int8_speedup']:.2f}x; over {fast['texts']} texts: {fast['rationales_differ']} "
        f"rationales differ from fp32's, cosine distance to the fp32 vector mean {fast['mean_cos_distance']:.4f}, "
        f"max {fast['max_cos_distance']:.4f}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="GRACE folder or causal LM (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--output", type=Path, required=True, help="folder for int8_quality.json")
    parser.add_argument("--texts", type=int, default=128, help="texts of the speed comparison (default: 128)")
    parser.add_argument("--rounds", type=int, default=2, help="alternated rounds of the speed comparison")
    parser.add_argument("--batch-size", type=int, default=64, help="texts per generation batch (default: 64)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="rationale budget (default: 64)")
    parser.add_argument("--max-queries", type=int, default=30, help="test queries per suite task (default: 30)")
    parser.add_argument("--max-input-tokens", type=int, default=128, help="cut texts to this many tokens")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.output.mkdir(parents=True, exist_ok=True)
    model = load_model(args.model, args.max_input_tokens)
    model[0].max_new_tokens = args.max_new_tokens
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    report: dict[str, Any] = {"model": args.model or "embedded SmolLM2-135M-Instruct", "machine": cpu_facts()}
    report["settings"] = settings
    warm_up(model)
    model[0].role_modes, model[0].max_new_tokens = None, args.max_new_tokens
    report["speed"] = speed(model, benchmark_texts(args.texts), args.batch_size, args.rounds)
    print(json.dumps({k: v for k, v in report["speed"].items() if k != "seconds"}), flush=True)
    report["quality"] = quality(model, args)
    (args.output / "int8_quality.json").write_text(json.dumps(report, indent=1))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
