"""A validation learning curve during training: the held-out suite's validation tasks, scored every ``eval_steps``.

The reward says how well the policy does on its own training batches; it does not say whether the saved *encoder*
gets better on texts it never saw, nor when it stops getting better. :class:`LearningCurve` therefore scores the
model as it would be saved (the GRACE model with the run's span and generation settings, LoRA merged) on the suite's
validation tasks, capped at ``learning_curve_max_queries`` queries per task so an evaluation costs about a minute on
the 135M backbone. The test tasks stay untouched until the final report.

Scoring must not change training, so that a run with the curve trains exactly like one without it:

* the live policy is never merged, moved or switched between train and eval mode: a LoRA policy is deep-copied and
  the copy merged; a full fine-tune is only read (``save_pretrained``);
* every random stream (Python, NumPy, torch CPU and CUDA) is restored afterwards; mteb reseeds all of them when it
  builds tasks, and the encoder's generation could draw from them;
* the encoding cache is off: the weights change between evaluations, so cached vectors would never be reused.

Scores go into the trainer's metrics (``heldout/validation/<task>``, ``.../mean``, ``.../step``) and leave with the
next regular log, to ``report_to`` backends and ``trainer_state.json``; the log is therefore also where
:func:`validation_points` reads the curve back, which keeps it across a resumed run. Only the main process scores;
the others wait at a barrier. Not verified with FSDP or DeepSpeed ZeRO-3 (sharded parameters cannot be copied this
way).
"""

from __future__ import annotations

import contextlib
import copy
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from transformers import TrainerCallback

from .config import GraceConfig


PREFIX = "heldout/validation/"
ScoreFn = Callable[[SentenceTransformer], dict[str, float]]
"""Scores a GRACE model: task name -> score (the default: :func:`validation_scores` on the suite)."""


def validation_scores(
    model: SentenceTransformer, max_queries: int, batch_size: int = 64, cache: bool = False
) -> dict[str, float]:
    """nDCG@10 of ``model`` on each of the suite's validation tasks, in the model's own mode.

    Without the encoding cache by default: during training the weights change between evaluations, so cached vectors
    would never be reused. The curve's start (:func:`curve_start`) is the exception.
    """
    import mteb

    from ..mteb_encoder import GraceEncoder
    from ..suite_tasks import suite_tasks

    tasks = suite_tasks("validation", max_queries)
    encoder = GraceEncoder(model, cache=cache)
    result = mteb.evaluate(
        encoder, tasks, cache=None, show_progress_bar=False, encode_kwargs={"batch_size": batch_size}
    )
    return {r.task_name: float(r.get_score()) for r in result.task_results}


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore Python's, NumPy's and torch's (CPU and the current CUDA device's) random states on exit."""
    python_state, numpy_state = random.getstate(), np.random.get_state()  # noqa: NPY002 - the legacy global state
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()  # this process's device only: no new contexts
    with torch.random.fork_rng(devices=[torch.cuda.current_device()] if cuda else []):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)  # noqa: NPY002


def score_policy(policy: Any, tokenizer: Any, args: GraceConfig, score_fn: ScoreFn) -> dict[str, float]:
    """``score_fn`` of the GRACE model built from ``policy``, leaving ``policy`` exactly as it was.

    A PEFT policy is deep-copied and the copy merged (``grace_model_from_policy`` merges what it is given); a plain
    model is only saved. Train/eval flags of every submodule are put back even if something flips them.
    """
    from .export import grace_model_from_policy

    modes = [(module, module.training) for module in policy.modules()]
    try:
        with preserved_rng(), torch.no_grad(), tempfile.TemporaryDirectory() as workdir:
            source = copy.deepcopy(policy) if callable(getattr(policy, "merge_and_unload", None)) else policy
            model = grace_model_from_policy(source, tokenizer, args, workdir)
            del source
            scores = score_fn(model)
            del model
    finally:
        for module, training in modes:
            module.training = training
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return scores


def curve_start(model: SentenceTransformer, args: GraceConfig) -> dict[str, Any]:
    """The curve's step-0 point: the untrained model, in the run's own mode, on the curve's validation queries.

    Without it the curve starts after ``eval_steps`` of training and does not show how far training moved the
    validation score. It is scored right after the base's held-out scoring, through the encoding cache: the curve's
    queries are a prefix of the base's validation queries and their documents a subset of its documents, so every
    encoding is already there (when ``learning_curve_max_queries <= heldout_eval_max_queries``) and the point costs
    seconds. The random streams are restored, so training is the same with or without it.
    """
    with preserved_rng():
        scores = validation_scores(model, args.learning_curve_max_queries, args.heldout_eval_batch_size, cache=True)
    return {"step": 0, "mean": sum(scores.values()) / max(1, len(scores)), "per_task": scores}


class LearningCurve(TrainerCallback):
    """Scores the validation tasks at every step that is a multiple of ``eval_steps`` (step 0, the untrained model,
    is :func:`curve_start`, scored before training with the base), except a step where training stops early (a
    signal, the time budget): a signalled job may have seconds left for its checkpoint, and a spent budget is spent.

    Args:
        trainer: the :class:`~grace_st.train.trainer.GraceGRPOTrainer` it is added to (``trainer.add_callback``);
            its tokenizer, config and metrics are used.
        score_fn: how a GRACE model is scored; default :func:`validation_scores` with the config's query cap.
    """

    def __init__(self, trainer: Any, score_fn: ScoreFn | None = None) -> None:
        self.trainer = trainer
        args: GraceConfig = trainer.args
        self.score_fn = score_fn or (
            lambda model: validation_scores(model, args.learning_curve_max_queries, args.heldout_eval_batch_size)
        )

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        interval = state.eval_steps
        if not interval or state.global_step % interval != 0:
            return control
        if control.should_training_stop and state.global_step < state.max_steps:
            return control  # stopped early (signal, time budget): the checkpoint and the exit come first
        if state.is_world_process_zero:
            started = time.perf_counter()
            policy = self.trainer.accelerator.unwrap_model(self.trainer.model)
            scores = score_policy(policy, self.trainer.processing_class, self.trainer.args, self.score_fn)
            metrics = self.trainer._metrics["train"]  # logged with the next regular log, like TRL's own metrics
            for name, value in scores.items():
                metrics[f"{PREFIX}{name}"].append(value)
            metrics[f"{PREFIX}mean"].append(sum(scores.values()) / max(1, len(scores)))
            metrics[f"{PREFIX}step"].append(float(state.global_step))
            metrics["grace/seconds/learning_curve"].append(time.perf_counter() - started)
        args.distributed_state.wait_for_everyone()
        return control


def validation_points(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The curve from a trainer's log: ``[{"step", "mean", "per_task"}]`` in step order, one per evaluation.

    The step is the logged ``heldout/validation/step`` (the step scored, even when the log came later).
    """
    points = {}
    for entry in log_history:
        if f"{PREFIX}mean" not in entry:
            continue
        step = int(entry.get(f"{PREFIX}step", entry.get("step", 0)))
        per_task = {
            key[len(PREFIX) :]: value
            for key, value in entry.items()
            if key.startswith(PREFIX) and key not in (f"{PREFIX}mean", f"{PREFIX}step")
        }
        points[step] = {"step": step, "mean": entry[f"{PREFIX}mean"], "per_task": per_task}
    return [points[step] for step in sorted(points)]
