"""Where a batch-64 decode step spends its time, and what refilling finished rows buys on the corpus path.

``--profile``: the default backbone (fp32, ``--threads`` threads) encodes ``--texts`` WordNet texts at batch
``--texts``; decode steps ``--skip`` to ``--skip + --steps`` run under ``torch.profiler`` and their self CPU time
is split into GEMMs (the linear layers and the LM head; their GFLOP/s from the rows and weights they multiply),
attention (``bmm``/``baddbmm``/softmax), elementwise and data movement (norms, RoPE, SiLU, copies, cache writes) and
what no operator accounts for (Python and dispatch between the operators), as shares of the steps' wall time.

``--corpus N``: the corpus path (``encode_with_rationales`` at ``--batch-size``) on N texts, refilled (this
library) and as plain batches (``model.encode`` at the same batch size, one batch per ``forward``), interleaved
``--rounds`` times in one run: texts/s, the mean rows of a decode step, a step's cost split into a part all rows
share and a part per row (least squares over the steps), the largest cosine distance and rationales that differ.

    python benchmarks/decode_profile.py --profile
    python benchmarks/decode_profile.py --corpus 256 --max-new-tokens 64
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch


sys.path.insert(0, str(Path(__file__).parent))
from encode_speed import PeakRss, benchmark_texts  # noqa: E402


GEMM = ("mkldnn::_linear_pointwise", "mkl::_mkl_linear", "aten::mm", "aten::addmm", "aten::linear", "aten::matmul")
ATTENTION = ("aten::bmm", "aten::baddbmm", "aten::_softmax", "aten::softmax", "aten::_scaled_dot_product")


class StepWatch:
    """Pre/post hooks on ``module`` that count the rows of each decode step and profile steps ``first`` to ``last``."""

    def __init__(self, module: torch.nn.Module, first: int = -1, last: int = -1) -> None:
        self.rows: list[int] = []
        self.seconds: list[float] = []  # each step's wall time (the profiled ones with the profiler's overhead)
        self.first, self.last, self.profiler, self.wall, self.linear_rows = first, last, None, 0.0, 0
        self.handles = [
            module.register_forward_pre_hook(self._before, with_kwargs=True),
            module.register_forward_hook(self._after),
        ]

    def _before(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        ids = kwargs["input_ids"]
        self.step = ids.shape[1] == 1
        if self.step:
            self.rows.append(ids.shape[0])
            if self.first <= len(self.rows) - 1 < self.last:
                self.linear_rows += ids.shape[0]
                self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
                self.profiler.__enter__()
            self.started = time.perf_counter()

    def _after(self, module: Any, args: Any, output: Any) -> None:
        if self.step:
            self.seconds.append(time.perf_counter() - self.started)
        if self.profiler is not None:
            self.wall += self.seconds[-1]
            self.profiler.__exit__(None, None, None)
            self.events = getattr(self, "events", []) + list(self.profiler.key_averages())
            self.profiler = None

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def split(watch: StepWatch, model: torch.nn.Module) -> dict[str, Any]:
    """Shares of the profiled steps' wall time by kind of operator, and the GEMMs' rate."""
    kinds = {"gemm": 0.0, "attention": 0.0, "elementwise_and_copies": 0.0}
    per_op: dict[str, float] = {}
    for event in watch.events:
        seconds = event.self_cpu_time_total / 1e6
        per_op[event.key] = per_op.get(event.key, 0.0) + seconds
        if event.key.startswith(GEMM):
            kinds["gemm"] += seconds
        elif event.key.startswith(ATTENTION):
            kinds["attention"] += seconds
        else:
            kinds["elementwise_and_copies"] += seconds
    kinds["python_and_dispatch"] = watch.wall - sum(kinds.values())
    steps = watch.last - watch.first
    before = watch.seconds[max(0, watch.first - steps) : watch.first]  # the same kind of steps, not profiled
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))  # LM head included
    return {
        "steps": steps,
        "mean_rows": watch.linear_rows / steps,
        "ms_per_step_profiled": round(1000 * watch.wall / steps, 1),
        "ms_per_step_unprofiled_before": round(1000 * sum(before) / max(1, len(before)), 1),
        "shares": {name: round(seconds / watch.wall, 3) for name, seconds in kinds.items()},
        "gemm_gflops": 2 * weights * watch.linear_rows / kinds["gemm"] / 1e9,
        "top_ops_ms_per_step": {
            k: round(1000 * v / steps, 2) for k, v in sorted(per_op.items(), key=lambda x: -x[1])[:12]
        },
    }


def profile(model: Any, texts: list[str], skip: int, steps: int) -> dict[str, Any]:
    """Decode steps ``skip`` to ``skip + steps`` of one batch, whole causal-LM calls (decoder and LM head)."""
    causal_lm = model[0].model
    watch = StepWatch(causal_lm, skip, skip + steps)
    try:
        model.encode(texts, batch_size=len(texts))
    finally:
        watch.remove()
    return split(watch, causal_lm)


def step_cost(rows: list[int], seconds: list[float]) -> dict[str, float]:
    """Least-squares ``seconds = fixed + per_row x rows`` over decode steps: the part of a step that rows share."""
    x, y = torch.tensor(rows, dtype=torch.float64), torch.tensor(seconds, dtype=torch.float64)
    per_row = float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())
    return {
        "fixed_ms": round(1000 * (float(y.mean()) - per_row * float(x.mean())), 1),
        "per_row_ms": round(1000 * per_row, 2),
    }


def corpus_run(model: Any, texts: list[str], batch_size: int, refill: bool) -> dict[str, Any]:
    """One pass over ``texts``: the corpus path (refilled), or ``model.encode`` in plain batches of ``batch_size``."""
    from grace_st.rationales import encode_with_rationales

    watch = StepWatch(model[0].model.get_decoder())
    start = time.perf_counter()
    with PeakRss() as rss:
        try:
            if refill:
                encoded = encode_with_rationales(model, texts, batch_size=batch_size)
                vectors = torch.stack([torch.from_numpy(e.embedding) for e in encoded])
                rationales = [e.rationale for e in encoded]
            else:
                outs = model.encode(texts, batch_size=batch_size, output_value=None, token_states=False)
                vectors = torch.stack([o["sentence_embedding"] for o in outs])
                rationales = [model[0].decode_rationale(o["rationale_ids"], o["rationale_mask"]) for o in outs]
        finally:
            watch.remove()
    seconds = time.perf_counter() - start
    return {
        "texts_per_s": len(texts) / seconds,
        "mean_step_rows": sum(watch.rows) / len(watch.rows),
        "steps": len(watch.rows),
        "peak_rss_mb": round(rss.mb),
        "step_cost": step_cost(watch.rows, watch.seconds),
        "vectors": vectors,
        "rationales": rationales,
    }


def corpus(model: Any, texts: list[str], batch_size: int, rounds: int) -> dict[str, Any]:
    """Refilled corpus path against plain batches of ``batch_size``, interleaved plain/refilled ``rounds`` times
    (a neighbour's load moves both alike); each ratio is of one adjacent pair."""
    pairs = [[corpus_run(model, texts, batch_size, refill) for refill in (False, True)] for _ in range(rounds)]
    plain, refilled = pairs[0]
    return {
        "texts": len(texts),
        "batch_size": batch_size,
        "refill_speedups": [round(r["texts_per_s"] / p["texts_per_s"], 3) for p, r in pairs],
        "plain_texts_per_s": [round(p["texts_per_s"], 3) for p, _ in pairs],
        "refilled_texts_per_s": [round(r["texts_per_s"], 3) for _, r in pairs],
        **{
            f"{name}_{key}": run[key]
            for name, run in (("plain", plain), ("refilled", refilled))
            for key in ("steps", "step_cost", "peak_rss_mb")
        },
        **{
            f"{name}_mean_step_rows": round(run["mean_step_rows"], 1)
            for name, run in (("plain", plain), ("refilled", refilled))
        },
        "max_cos_distance": float((1 - (plain["vectors"] * refilled["vectors"]).sum(-1)).max()),
        "rationales_differ": sum(a != b for a, b in zip(plain["rationales"], refilled["rationales"], strict=True)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--skip", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--corpus", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="plain/refilled pairs of the corpus comparison")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    from grace_st import build_grace_model

    hf_logging.set_verbosity_error()
    model = build_grace_model(max_new_tokens=args.max_new_tokens, device="cpu")
    model.encode(["warm-up text", "another"], batch_size=2)
    if args.profile:
        print(json.dumps({"profile": profile(model, benchmark_texts(args.texts), args.skip, args.steps)}), flush=True)
    if args.corpus:
        print(
            json.dumps({"corpus": corpus(model, benchmark_texts(args.corpus), args.batch_size, args.rounds)}),
            flush=True,
        )


if __name__ == "__main__":
    main()
