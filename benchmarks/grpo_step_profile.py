"""Where a GRACE training step spends its time: rollouts, anchors, reward embeddings, policy update.

Plain GRPO with a rule-based reward pays for rollout generation and the policy update only. GRACE adds one anchor
rationale per query and negative (generated without gradient) and a forward pass over every rollout and anchor to
embed it. This script runs a few steps of :class:`GraceGRPOTrainer` on real WordNet triples and prints the split,
on a tiny random backbone and on the embedded SmolLM2-135M-Instruct, so that overhead is visible:

    .venv/bin/python benchmarks/grpo_step_profile.py --steps 3

The first step is a warm-up and is left out of the means. The policy update is the micro-step time minus the three
measured phases (it includes the old/new log-prob forward, the backward pass and the optimizer step).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


PHASES = ("rollout_generation", "anchor_generation", "reward_embeddings")


def _tiny_backbone(folder: Path) -> str:
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    from conftest import make_tiny_backbone

    return str(make_tiny_backbone(folder / "tiny"))


def profile(backbone: str, steps: int, args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from grace_st.train.config import GraceConfig
    from grace_st.train.data import prepare_dataset
    from grace_st.train.trainer import GraceGRPOTrainer
    from grace_st.wordnet import wordnet_triples

    tokenizer = AutoTokenizer.from_pretrained(backbone, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(backbone)
    rows = wordnet_triples("train", limit=args.batch_size // args.rollouts * (steps + 1))
    config = GraceConfig(
        output_dir=str(workdir / "run"),
        max_steps=steps + 1,
        per_device_train_batch_size=args.batch_size,
        num_generations=args.rollouts,
        max_completion_length=args.max_new_tokens,
        gradient_checkpointing=False,
        learning_rate=1e-4,
        report_to="none",
        save_strategy="no",
        truncation_penalty=None,
    )
    data = prepare_dataset(Dataset.from_list(rows), "supervised", tokenizer, config.max_input_tokens)
    lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM") if args.lora else None
    trainer = GraceGRPOTrainer(model, config, data, processing_class=tokenizer, peft_config=lora)
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "grace/seconds/training_step" in entry][1:]
    means = {phase: statistics.mean(entry[f"grace/seconds/{phase}"] for entry in logs) for phase in PHASES}
    means["step"] = statistics.mean(entry["grace/seconds/training_step"] for entry in logs)
    means["policy_update"] = means["step"] - sum(means[phase] for phase in PHASES)
    return means


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="measured steps after one warm-up step")
    parser.add_argument("--batch-size", type=int, default=16, help="completions per step (examples x rollouts)")
    parser.add_argument("--rollouts", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--no-lora", dest="lora", action="store_false", help="full fine-tuning instead of LoRA")
    parser.add_argument("--backbones", nargs="+", default=["tiny", "default"])
    args = parser.parse_args()
    import torch

    from grace_st.backbones import embedded_backbone_path

    torch.set_num_threads(max(1, torch.get_num_threads()))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.backbones:
            backbone = _tiny_backbone(Path(tmp)) if name == "tiny" else str(embedded_backbone_path())
            start = time.perf_counter()
            results[name] = profile(backbone, args.steps, args, Path(tmp) / name)
            results[name]["wall_seconds"] = time.perf_counter() - start
    print(
        f"\nGRACE step profile: {args.batch_size} completions/step ({args.rollouts} rollouts), "
        f"{args.max_new_tokens} new tokens, LoRA={args.lora}, {torch.get_num_threads()} threads; mean of "
        f"{args.steps} steps after a warm-up"
    )
    print(
        f"{'backbone':<10}" + "".join(f"{p:>20}" for p in (*PHASES, "policy_update", "step")) + f"{'GRACE share':>14}"
    )
    for name, r in results.items():
        share = (r["anchor_generation"] + r["reward_embeddings"]) / r["step"]
        cells = "".join(f"{r[p]:>19.2f}s" for p in (*PHASES, "policy_update", "step"))
        print(f"{name:<10}{cells}{share:>13.0%}")
    print(json.dumps({name: {k: round(v, 3) for k, v in r.items()} for name, r in results.items()}))


if __name__ == "__main__":
    main()
