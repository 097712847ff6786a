"""Where a GRACE training step spends its time, and what the single-pass rollouts save over the old path.

A GRACE step writes K rollouts per example, one anchor rationale per query and negative, embeds all of them with the
policy, and updates the policy. :class:`GraceGRPOTrainer` does the first three in the encoder's single pass (one call
for the rollouts, one for the anchors, embeddings read off the generation). The old path (``reference_grpo.py``, kept
as this benchmark's reference) ran TRL's ``generate``, then ``transformers.generate`` for the anchors, then a separate
forward to embed everything.

    .venv/bin/python benchmarks/grpo_step_profile.py --steps 3            # the new path's step split
    .venv/bin/python benchmarks/grpo_step_profile.py --compare --steps 3  # old and new, side by side

``--compare`` trains both in one process on the same data, the steps interleaved old/new (two threads passing a
baton: only one runs at a time). Before each pair of steps the old policy gets the new one's weights and both get the
same random state, so both sample the same rollouts and anchors; the script asserts that token for token and reports
the largest reward difference, each path scoring with embeddings from its own generation. The first pair is a warm-up
and is left out; times are medians over the measured steps (robust to a neighbour's load spike). The last line is
JSON: the default backbone's ``step_speedup``, ``phases_speedup`` (old rollout generation + anchor generation + reward
embeddings over new generation + reward), ``old_step_s``, ``new_step_s``, ``max_reward_diff``, and every backbone's
numbers under ``backbones``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


PHASES = ("rollout_generation", "anchor_generation", "reward_embeddings")
NEW_PHASES = {"generation": "generation", "reward": "reward"}
"""The new path writes rollouts and anchors in one pass that also embeds them; its reward stands in for the
embedding pass the old path had."""


def _tiny_backbone(folder: Path) -> str:
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    from conftest import make_tiny_backbone

    return str(make_tiny_backbone(folder / "tiny"))


def _setup(backbone: str, steps: int, args: argparse.Namespace, workdir: Path) -> tuple[Any, Any, Any, Any]:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer

    from grace_st.train.config import GraceConfig
    from grace_st.train.data import prepare_dataset
    from grace_st.wordnet import wordnet_triples

    tokenizer = AutoTokenizer.from_pretrained(backbone, padding_side="left")
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
        seed=0,
    )
    data = prepare_dataset(Dataset.from_list(rows), "supervised", tokenizer, config.max_input_tokens)
    lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM") if args.lora else None
    return tokenizer, config, data, lora


def _phase_medians(trainer: Any, names: dict[str, str]) -> dict[str, float]:
    logs = [entry for entry in trainer.state.log_history if "grace/positive" in entry or "reward" in entry][1:]
    return {
        phase: statistics.median(entry.get(f"grace/seconds/{key}", 0.0) for entry in logs)
        for phase, key in names.items()
    }


def profile(backbone: str, steps: int, args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    """The new path alone: median phase and step times over ``steps`` steps after a warm-up."""
    from transformers import AutoModelForCausalLM

    from grace_st.train.trainer import GraceGRPOTrainer

    tokenizer, config, data, lora = _setup(backbone, steps, args, workdir)
    model = AutoModelForCausalLM.from_pretrained(backbone)
    trainer = GraceGRPOTrainer(model, config, data, processing_class=tokenizer, peft_config=lora)
    trainer.train()
    medians = _phase_medians(trainer, NEW_PHASES)
    medians["step"] = statistics.median(trainer.step_timer.seconds[1:])
    medians["policy_update"] = medians["step"] - sum(medians[phase] for phase in NEW_PHASES)
    return medians


class _Baton:
    """Lets one of two training threads run at a time, in a fixed alternation; a failure releases both."""

    def __init__(self, first: str) -> None:
        self.turn, self.failed = first, False
        self.condition = threading.Condition()

    def wait(self, name: str) -> None:
        with self.condition:
            self.condition.wait_for(lambda: self.turn == name or self.failed)
            if self.failed:
                raise RuntimeError("the other training thread failed")

    def give(self, name: str) -> None:
        with self.condition:
            self.turn = name
            self.condition.notify_all()

    def fail(self) -> None:
        with self.condition:
            self.failed = True
            self.condition.notify_all()


def _lockstep(name: str, other: str, baton: _Baton, before_step: Any) -> Any:
    """A callback: wait for the baton, prepare the step (weights, random state), time it, pass the baton."""
    import torch
    from transformers import TrainerCallback

    class LockStep(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            baton.wait(name)
            before_step()
            torch.manual_seed(1000 + state.global_step)
            self.start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.seconds.append(time.perf_counter() - self.start)
            baton.give(other)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            baton.give(other)

    return LockStep()


class _Recorder:
    """Wraps a reward function and keeps, per call, the rollouts, the anchors and the rewards."""

    def __init__(self, reward: Any, anchors: Any) -> None:
        self.reward, self.anchors, self.__name__ = reward, anchors, reward.__name__
        self.calls: list[tuple[list[list[int]], list[list[int]], list[float]]] = []

    def __call__(self, prompts: list, completions: list, completion_ids: list[list[int]], **columns: Any) -> list:
        rewards = self.reward(prompts, completions, completion_ids, **columns)
        self.calls.append(([list(ids) for ids in completion_ids], self.anchors(columns), list(rewards)))
        return rewards


def _new_anchors(columns: dict[str, Any]) -> list[list[int]]:
    k = columns["grace_example"].count(columns["grace_example"][0])
    out = []
    for name in ("query", "negative"):
        ids, lengths = columns[f"grace_{name}_ids"][::k], columns[f"grace_{name}_prompt_len"][::k]
        out += [row[n:] for row, n in zip(ids, lengths, strict=True)]
    return out


def compare(backbone: str, steps: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Old and new path, steps interleaved in one process; see the module docstring."""
    from reference_grpo import ReferenceGRPOTrainer
    from transformers import AutoModelForCausalLM

    from grace_st.train.trainer import GraceGRPOTrainer

    tokenizer, config, data, lora = _setup(backbone, steps, args, workdir / "new")
    _, old_config, _, _ = _setup(backbone, steps, args, workdir / "old")
    baton = _Baton("old")
    trainers: dict[str, Any] = {}

    def sync_old() -> None:  # the old path samples from the new path's current weights
        new = dict(trainers["new"].model.named_parameters())
        for name, parameter in trainers["old"].model.named_parameters():
            if parameter.requires_grad:
                parameter.data.copy_(new[name].data)

    steppers = {"old": _lockstep("old", "new", baton, sync_old), "new": _lockstep("new", "old", baton, lambda: None)}
    trainers["new"] = GraceGRPOTrainer(
        AutoModelForCausalLM.from_pretrained(backbone), config, data, processing_class=tokenizer,
        peft_config=lora, callbacks=[steppers["new"]],
    )  # fmt: skip
    trainers["old"] = ReferenceGRPOTrainer(
        AutoModelForCausalLM.from_pretrained(backbone), old_config, data, processing_class=tokenizer,
        peft_config=lora, callbacks=[steppers["old"]],
    )  # fmt: skip
    old_reward = trainers["old"].reward_funcs[0]
    recorders = {
        "new": _Recorder(trainers["new"].reward_funcs[0], _new_anchors),
        "old": _Recorder(old_reward, lambda columns: list(old_reward.anchor_ids)),
    }
    for name, recorder in recorders.items():
        trainers[name].reward_funcs[0] = recorder
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            trainers[name].train()
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)
            baton.fail()

    threads = [threading.Thread(target=run, args=(name,)) for name in ("old", "new")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return _summarise(trainers, steppers, recorders)


def _summarise(trainers: dict[str, Any], steppers: dict[str, Any], recorders: dict[str, Any]) -> dict[str, Any]:
    old_calls, new_calls = recorders["old"].calls, recorders["new"].calls
    assert len(old_calls) == len(new_calls) > 1, (len(old_calls), len(new_calls))
    diff = 0.0
    for step, (old, new) in enumerate(zip(old_calls, new_calls, strict=True)):
        assert old[0] == new[0], f"step {step + 1}: the two paths sampled different rollouts"
        assert old[1] == new[1], f"step {step + 1}: the two paths sampled different anchors"
        diff = max(diff, max(abs(a - b) for a, b in zip(old[2], new[2], strict=True)))
    old_phases = _phase_medians(trainers["old"], {phase: phase for phase in PHASES})
    new_phases = _phase_medians(trainers["new"], NEW_PHASES)
    old_step, new_step = (statistics.median(steppers[name].seconds[1:]) for name in ("old", "new"))
    return {
        "step_speedup": old_step / new_step,
        "phases_speedup": sum(old_phases.values()) / sum(new_phases.values()),
        "old_step_s": old_step,
        "new_step_s": new_step,
        "max_reward_diff": diff,
        "old_phases_s": old_phases,
        "new_phases_s": new_phases,
        "steps_compared": len(old_calls),
    }


def _rounded(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    return float(f"{value:.4g}") if isinstance(value, float) else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="measured steps after one warm-up step")
    parser.add_argument("--batch-size", type=int, default=16, help="completions per step (examples x rollouts)")
    parser.add_argument("--rollouts", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--no-lora", dest="lora", action="store_false", help="full fine-tuning instead of LoRA")
    parser.add_argument("--backbones", nargs="+", default=["tiny", "default"])
    parser.add_argument("--compare", action="store_true", help="time the old path against the new one")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from grace_st.backbones import embedded_backbone_path

    sys.path.insert(0, str(Path(__file__).parent))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.backbones:
            backbone = _tiny_backbone(Path(tmp)) if name == "tiny" else str(embedded_backbone_path())
            start = time.perf_counter()
            run = compare if args.compare else profile
            results[name] = run(backbone, args.steps, args, Path(tmp) / name)
            results[name]["wall_seconds"] = time.perf_counter() - start
    print(
        f"\nGRACE step profile: {args.batch_size} completions/step ({args.rollouts} rollouts), "
        f"{args.max_new_tokens} new tokens, LoRA={args.lora}, {torch.get_num_threads()} threads; median of "
        f"{args.steps} steps after a warm-up"
    )
    if args.compare:
        for name, r in results.items():
            print(
                f"{name:<10} step {r['old_step_s']:.2f}s -> {r['new_step_s']:.2f}s ({r['step_speedup']:.2f}x); "
                f"generation phases {sum(r['old_phases_s'].values()):.2f}s -> {sum(r['new_phases_s'].values()):.2f}s "
                f"({r['phases_speedup']:.2f}x); max |reward diff| {r['max_reward_diff']:.2e}"
            )
        headline = results.get("default", next(iter(results.values())))
        keys = ("step_speedup", "phases_speedup", "old_step_s", "new_step_s", "max_reward_diff")
        print(json.dumps({**{key: _rounded(headline[key]) for key in keys}, "backbones": _rounded(results)}))
        return
    columns = (*NEW_PHASES, "policy_update", "step")
    print(f"{'backbone':<10}" + "".join(f"{p:>16}" for p in columns))
    for name, r in results.items():
        print(f"{name:<10}" + "".join(f"{r[p]:>15.2f}s" for p in columns))
    print(json.dumps(_rounded(results)))


if __name__ == "__main__":
    main()
