"""How close GRACE encoding gets to the machine: one run, same texts, same settings, ratios side by side.

Prints, on the embedded default backbone (SmolLM2-135M-Instruct, fp32), greedy decoding, ``--max-new-tokens`` new
tokens, ``--threads`` torch threads and ``--texts`` mixed-length WordNet texts (definitions, example sentences, and
definitions with their examples):

1. the machine's fp32 matrix-multiply rate, measured in this run (best of a few square matmuls) before, every 5 s
   during (the run paused between two forward calls, the pause not counted) and after every run below, since
   other tenants of a shared machine move it by tens of percent within a minute; the median is that run's rate;
2. a naive baseline: per text, ``generate`` at batch 1, then a separate full forward with the LM head for the
   hidden states, then mean pooling over the GRACE span;
3. the library's ``model.encode`` at each ``--batch-sizes`` (single pass), and at the largest batch size with the
   two-pass path (``two_pass_generation()``: ``generate``, then a second forward of the base model, public APIs only
   and no CPU kernels: what a saved folder runs where ``grace_st`` is not installed);
4. the default corpus path: what ``grace encode --file`` runs (``encode_with_rationales``, 256-text chunks,
   ``--corpus-batch-size`` 64) on ``--corpus-texts`` texts, the first ``--texts`` of them the ones above (checked
   against the naive vectors and rationales); its texts/s and rate go in the JSON beside the largest batch's;
5. per run: texts/s, generated tokens/s, useful GFLOP/s (2 x parameters x (prompt tokens + generated tokens) /
   wall time) and its fraction of that run's matmul rate, peak RSS during the run, the largest cosine
   distance to the naive vectors and how many rationales differ from the naive ones;
6. as its last line, one JSON object: speedup_vs_naive (largest batch over naive, texts/s), flop_fraction (largest
   batch), single_pass_speedup (single over two-pass at the largest batch) and max_cos_distance (over all runs);
   then the corpus path's texts/s, its fraction and its ratio to the largest batch, and the machine: CPU model,
   vector extensions (avx2, avx512f, avx512_vnni, amx_*, ...) and a measured copy bandwidth.

Where the time goes, per machine kind (2 threads; ``benchmarks/decode_profile.py --profile --texts 64 --skip 4
--steps 6 --max-new-tokens 64``: decode steps 4-9 of a batch of 64, 57.5 rows on average, under ``torch.profiler``):

- Intel Xeon, AVX-512 + VNNI + AMX (matmul 330-360 GFLOP/s; 2026-12-02). Before this round's changes (625ba35): a
  step took 152 ms (169 profiled): 63 % GEMMs (oneDNN packed) at only 146 GFLOP/s, 13 % attention, 10 %
  elementwise, 13 % Python and dispatch; the prefill of each batch, padded to its longest prompt, took a quarter of
  the encode. Now: 112 ms (110 profiled): 59 % GEMMs (MKL packed, chosen on this machine) at 238 GFLOP/s, 17 %
  attention (``baddbmm``/``bmm`` over the KV cache: memory-bound), 11 % elementwise and copies, 13 % Python and
  dispatch; prefills run in runs of similar length.
- AMD EPYC, AVX2 + FMA, no AVX-512 (2026-12-01, before this round's changes): 169 ms profiled (179 unprofiled): 71.5 %
  GEMMs (oneDNN packed) at 128 GFLOP/s, about the machine's matmul rate; 10.4 % attention; 8.3 % elementwise;
  9.7 % Python and dispatch. A least-squares fit of step time on rows gives about 40-55 ms a step shared by all
  rows plus 2.0 ms a row: bound by arithmetic, so refilling finished rows gains only a few per cent there.

    python benchmarks/encode_speed.py            # the full run (about 20-25 min on a 2-core CPU)
    python benchmarks/encode_speed.py --texts 16 --batch-sizes 1 16 --max-new-tokens 16   # a quick look
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """Best fp32 GFLOP/s of ``size``-square matmuls with the current thread count."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def benchmark_texts(count: int) -> list[str]:
    """``count`` WordNet texts of mixed length, spread over the whole lexicon, in a fixed order."""
    from grace_st.wordnet import load_synsets

    synsets = [s for s in load_synsets() if s.examples]
    step = max(1, len(synsets) // count)
    texts = []
    for i, synset in enumerate(synsets[::step][:count]):
        kind = i % 3
        if kind == 0:
            texts.append(synset.definition)
        elif kind == 1:
            texts.append(synset.examples[0])
        else:
            texts.append(f"{synset.lemmas[0].replace('_', ' ')}: {synset.definition}; " + "; ".join(synset.examples))
    return texts


VECTOR_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16")
VECTOR_FLAGS += ("avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
"""The /proc/cpuinfo flags that decide which GEMM kernels oneDNN and MKL can pick (AVX2 vs AVX-512, VNNI, AMX)."""


def cpu_facts() -> dict[str, Any]:
    """The CPU model and which of :data:`VECTOR_FLAGS` it has, from /proc/cpuinfo (Linux; empty elsewhere).

    The same code reaches 64 % of the matmul rate on one machine kind and 52 % on another, so every result is
    labelled with the machine it was measured on.
    """
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"cpu_model": "unknown", "vector_extensions": []}
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}  # the last processor's entries
    flags = set(fields.get("flags", "").split())
    return {
        "cpu_model": fields.get("model name", "unknown"),
        "vector_extensions": [f for f in VECTOR_FLAGS if f in flags],
    }


def memory_bandwidth_gbs(megabytes: int = 512, repeats: int = 5) -> float:
    """Best-of-``repeats`` copy bandwidth of a ``megabytes`` fp32 tensor, in GB/s (bytes read + bytes written).

    A decode step at a few dozen rows streams all 540 MB of weights once; this rate bounds it from below.
    """
    source = torch.ones(megabytes * 1024**2 // 4)
    target = torch.empty_like(source)
    target.copy_(source)  # warm-up: pages mapped
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        target.copy_(source)
        best = min(best, time.perf_counter() - start)
    return 2 * source.numel() * 4 / best / 1e9


class PeakRss:
    """Peak resident memory during a block: the kernel's high-water mark, reset on entry where Linux allows it."""

    def __enter__(self) -> PeakRss:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)
        except OSError:
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            status = Path("/proc/self/status").read_text()
            self.mb = int(next(x for x in status.splitlines() if x.startswith("VmHWM")).split()[1]) / 1024
        except (OSError, StopIteration):
            self.mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def naive_encode(generator: Any, texts: list[str], max_new_tokens: int) -> dict[str, Any]:
    """Per text: generate at batch 1, a full forward with the LM head for the hidden states, mean pooling."""
    from transformers import GenerationConfig

    from grace_st.modeling.prompts import build_prompt_batch
    from grace_st.modeling.spans import rationale_mask

    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=generator.end_ids,
        pad_token_id=generator.pad_token_id,
    )
    template, model = generator.template(generator.instruction), generator.model
    vectors, rationales, prompt_tokens, generated = [], [], 0, 0
    for text in texts:
        batch = build_prompt_batch(
            generator.tokenizer, template, [text], generator.max_input_tokens, generator.pad_token_id
        )
        with torch.no_grad():
            sequence = model.generate(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask, generation_config=config
            )
            rationale = sequence[:, batch.input_ids.shape[1] :]
            completion = rationale_mask(rationale, generator.end_ids)
            hidden = model(input_ids=sequence, output_hidden_states=True).hidden_states[-1]
        span = torch.cat([batch.span_mask, completion], dim=1)[0].bool()
        vectors.append(F.normalize(hidden[0][span].mean(0), dim=-1))
        rationales.append(rationale[0][completion[0].bool()].tolist())
        prompt_tokens += int(batch.attention_mask.sum())
        generated += int(completion.sum())
    return {"vectors": torch.stack(vectors), "rationales": rationales, "prompt": prompt_tokens, "gen": generated}


def library_encode(model: Any, texts: list[str], batch_size: int) -> dict[str, Any]:
    outs = model.encode(texts, batch_size=batch_size, output_value=None)
    return {
        "vectors": torch.stack([out["sentence_embedding"].float() for out in outs]),
        "rationales": [out["rationale_ids"][out["rationale_mask"].bool()].tolist() for out in outs],
        "prompt": sum(int(out["sequence_mask"].sum() - out["rationale_mask"].sum()) for out in outs),
        "gen": sum(int(out["rationale_mask"].sum()) for out in outs),
    }


def corpus_texts(headline: list[str], count: int) -> list[str]:
    """``count`` texts that start with the headline texts (so they can be checked against the naive vectors) and go
    on with more WordNet texts spread over the lexicon."""
    seen = set(headline)
    more = [text for text in benchmark_texts(count) if text not in seen]
    return (headline + more)[:count]


def corpus_encode(model: Any, texts: list[str], batch_size: int, checked: int) -> dict[str, Any]:
    """What ``grace encode --file`` runs by default: ``encode_with_rationales`` (256-text chunks) at ``batch_size``.

    Token counts are read off the generator's outputs as they pass (the corpus path keeps only vectors and
    rationale strings); the first ``checked`` texts' vectors and rationales are kept for the comparison.
    """
    from grace_st.rationales import encode_with_rationales

    counts = {"prompt": 0, "gen": 0}

    def count(module: Any, args: Any, output: dict[str, torch.Tensor]) -> None:
        generated = int(output["rationale_mask"].sum())
        counts["prompt"] += int(output["sequence_mask"].sum()) - generated
        counts["gen"] += generated

    handle = model[0].register_forward_hook(count)
    try:
        encoded = encode_with_rationales(model, texts, batch_size=batch_size)
    finally:
        handle.remove()
    return {
        "vectors": torch.stack([torch.from_numpy(e.embedding) for e in encoded[:checked]]),
        "rationales": [e.rationale for e in encoded[:checked]],
        "texts": len(encoded),
        **counts,
    }


class MatmulSampler:
    """The matmul rate measured before, during (every ``interval`` seconds, between two forward calls) and after a run.

    On a shared virtual machine the rate moves by tens of percent within a minute (other tenants' load), so a rate
    taken minutes away from a run says little about the machine during it. The sampler pauses the run between two
    forward calls of ``model``, measures, and keeps the pause out of the run's wall time; the run is compared with
    the median of its samples.
    """

    def __init__(self, model: torch.nn.Module, interval: float = 5.0) -> None:
        self.model, self.interval, self.samples, self.paused = model, interval, [], 0.0

    def __enter__(self) -> MatmulSampler:
        self.samples.append(matmul_gflops(repeats=3))
        self.last = time.perf_counter()
        self.handle = self.model.register_forward_pre_hook(self._maybe_sample)
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()
        self.samples.append(matmul_gflops(repeats=3))

    def _maybe_sample(self, module: Any, args: Any) -> None:
        now = time.perf_counter()
        if now - self.last >= self.interval:
            self.samples.append(matmul_gflops(repeats=3))
            self.last = time.perf_counter()
            self.paused += self.last - now

    @property
    def rate(self) -> float:
        return statistics.median(self.samples)


def timed(model: torch.nn.Module, run: Any) -> tuple[dict[str, Any], float, float, MatmulSampler]:
    """Result, seconds (sampling pauses excluded) and peak RSS of ``run``, and the matmul rates sampled around it."""
    with MatmulSampler(model) as sampler, PeakRss() as rss:
        start = time.perf_counter()
        result = run()
        seconds = time.perf_counter() - start - sampler.paused
    return result, seconds, rss.mb, sampler


def row(
    name: str, result: dict, seconds: float, rss: float, sampler: MatmulSampler, params: int, naive: dict | None
) -> dict:
    texts, rate = result.get("texts", len(result["rationales"])), sampler.rate
    gflops = 2 * params * (result["prompt"] + result["gen"]) / seconds / 1e9
    entry = {
        "run": name,
        "texts_per_s": texts / seconds,
        "gen_tokens_per_s": result["gen"] / seconds,
        "useful_gflops": gflops,
        "flop_fraction": gflops / rate,
        "matmul_gflops": rate,
        "matmul_range": (min(sampler.samples), max(sampler.samples), len(sampler.samples)),
        "peak_rss_mb": rss,
        "seconds": seconds,
    }
    if naive is not None:
        cos = (result["vectors"] * naive["vectors"]).sum(-1)
        entry["max_cos_distance"] = float((1 - cos).max())
        entry["rationales_differ"] = sum(
            a != b for a, b in zip(result["rationales"], naive["rationales"], strict=True)
        )
    return entry


def print_table(rows: list[dict]) -> None:
    columns = ["run", "texts/s", "generated tok/s", "useful GFLOP/s", "matmul GFLOP/s (median)", "of matmul"]
    columns += ["matmul min-max (samples)", "peak RSS MB", "max cos dist", "rationales differ", "s"]
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for r in rows:
        low, high, count = r["matmul_range"]
        cells = [r["run"], f"{r['texts_per_s']:.3f}", f"{r['gen_tokens_per_s']:.1f}", f"{r['useful_gflops']:.1f}"]
        cells += [f"{r['matmul_gflops']:.1f}", f"{r['flop_fraction']:.1%}", f"{low:.0f}-{high:.0f} ({count})"]
        cells += [f"{r['peak_rss_mb']:.0f}"]
        cells += [f"{r['max_cos_distance']:.2e}" if "max_cos_distance" in r else "(reference)"]
        cells += [str(r.get("rationales_differ", "-")), f"{r['seconds']:.1f}"]
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=128)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--corpus-texts", type=int, default=512, help="texts of the corpus-path row (grace encode --file defaults)"
    )
    parser.add_argument("--corpus-batch-size", type=int, default=64, help="grace encode's --batch-size default")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    from grace_st import build_grace_model
    from grace_st.rationale_generator import two_pass_generation

    hf_logging.set_verbosity_error()
    machine = {**cpu_facts(), "memory_bandwidth_gbs": round(memory_bandwidth_gbs(), 1)}
    print(
        f"CPU: {machine['cpu_model']}; vector extensions: {' '.join(machine['vector_extensions']) or 'none found'}; "
        f"memory bandwidth (512 MB copy, best of 5): {machine['memory_bandwidth_gbs']} GB/s"
    )
    print(f"fp32 matmul rate at start: {matmul_gflops():.1f} GFLOP/s ({args.threads} threads, 2048^3, best of 5)")
    texts = benchmark_texts(args.texts)
    model = build_grace_model(max_new_tokens=args.max_new_tokens, device="cpu")
    generator = model[0]
    params = generator.model.num_parameters()
    words = sorted(len(t.split()) for t in texts)
    print(
        f"{len(texts)} WordNet texts, {words[0]}-{words[-1]} words (median {words[len(words) // 2]}); "
        f"{params / 1e6:.1f}M parameters; greedy, {args.max_new_tokens} new tokens",
        flush=True,
    )
    model.encode(texts[:2], batch_size=2)  # warm-up
    naive = timed(generator.model, lambda: naive_encode(generator, texts, args.max_new_tokens))
    rows = [row("naive (generate b=1 + full forward)", *naive, params, None)]
    print(f"naive done in {naive[1]:.0f} s", flush=True)
    results = {}
    for batch_size in args.batch_sizes:
        results[batch_size] = timed(generator.model, lambda b=batch_size: library_encode(model, texts, b))
        rows.append(row(f"library b={batch_size} single pass", *results[batch_size], params, naive[0]))
        print(f"library b={batch_size} done in {results[batch_size][1]:.0f} s", flush=True)
    corpus = corpus_texts(texts, args.corpus_texts)
    as_text = [generator.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in naive[0]["rationales"]]
    naive_text = {**naive[0], "rationales": as_text}
    encoded = timed(generator.model, lambda: corpus_encode(model, corpus, args.corpus_batch_size, len(texts)))
    corpus_name = f"corpus path ({len(corpus)} texts, b={args.corpus_batch_size})"
    rows.append(row(corpus_name, *encoded, params, naive_text))
    print(f"corpus path done in {encoded[1]:.0f} s", flush=True)
    largest = max(args.batch_sizes)
    with two_pass_generation():  # what a saved folder runs where grace_st is not installed (public APIs only)
        two_pass = timed(generator.model, lambda: library_encode(model, texts, largest))
    rows.append(row(f"folder fallback b={largest} two-pass", *two_pass, params, naive[0]))
    print("each run's fraction is of the median matmul rate sampled before, every 5 s during (paused), and after it")
    print_table(rows)
    by_name = {r["run"]: r for r in rows}
    best = by_name[f"library b={largest} single pass"]
    two_pass = by_name[f"folder fallback b={largest} two-pass"]
    summary = {
        "speedup_vs_naive": round(best["texts_per_s"] / rows[0]["texts_per_s"], 3),
        "flop_fraction": round(best["flop_fraction"], 3),
        "single_pass_speedup": round(best["texts_per_s"] / two_pass["texts_per_s"], 3),
        "max_cos_distance": max(r["max_cos_distance"] for r in rows[1:]),
        # The same two ratios with each run's throughput divided by the matmul rate sampled during it: what they
        # would be had the machine run at one speed throughout (it moves by tens of percent on a shared host).
        "speedup_vs_naive_at_equal_rate": round(best["flop_fraction"] / rows[0]["flop_fraction"], 3),
        "single_pass_speedup_at_equal_rate": round(best["flop_fraction"] / two_pass["flop_fraction"], 3),
        # The default corpus path (grace encode --file) beside the largest batch, same run (added, not a headline).
        "corpus_texts_per_s": round(by_name[corpus_name]["texts_per_s"], 3),
        "corpus_flop_fraction": round(by_name[corpus_name]["flop_fraction"], 3),
        "corpus_over_largest_batch": round(by_name[corpus_name]["texts_per_s"] / best["texts_per_s"], 3),
        **machine,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
