"""The training entry point behind `grace train` and `accelerate launch -m grace_st.train --config X.yaml`.

Arguments are TRL's: a YAML ``--config`` plus command-line overrides of any field of ``GraceScriptArguments``
(data), :class:`GraceConfig` (training) and TRL's ``ModelConfig`` (backbone, dtype, LoRA), parsed by ``TrlParser``.
The run: load backbone and data, score the untrained model on the held-out task, train with
:class:`GraceGRPOTrainer` (checkpoints in ``<output_dir>/checkpoints``), merge LoRA, score again, write the GRACE
model with its card and ``train_summary.json`` atomically into ``output_dir``, and push it if asked.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import ModelConfig, ScriptArguments, TrlParser, get_peft_config

from ..backbones import EMBEDDED_BACKBONE_ID
from ..errors import GraceUserError
from ..model_ids import is_hub_id
from .checkpoint_safety import check_resumable
from .config import GraceConfig
from .console import LOG_FILE, GraceProgress, summary_table
from .data import load_source, prepare_dataset
from .export import grace_model_from_policy, save_trained_model
from .graceful_stop import GracefulStop
from .learning_curve import LearningCurve, curve_start
from .output_dir import (
    CHECKPOINTS,
    check_output_dir,
    clear_checkpoints,
    output_dir_lock,
    resolve_resume,
    resume_requested,
)
from .summary import card_training_record, reward_curve, training_summary
from .time_budget import TimeBudget


logger = logging.getLogger(__name__)


@dataclass
class GraceScriptArguments(ScriptArguments):
    """TRL's data arguments, plus a row cap for smoke runs. ``dataset_name`` may also be a local file or built-in."""

    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most this many training rows."})
    num_card_examples: int = field(default=3, metadata={"help": "Held-out texts shown with rationales in the card."})


def parse_args(argv: list[str] | None = None) -> tuple[GraceScriptArguments, GraceConfig, ModelConfig]:
    parser = TrlParser((GraceScriptArguments, GraceConfig, ModelConfig))
    try:
        script_args, args, model_args = parser.parse_args_and_config(argv)
    except (ValueError, TypeError) as exc:  # TRL's and Transformers' own checks of the settings: the user's to fix
        if isinstance(exc, GraceUserError):
            raise
        raise GraceUserError(f"Invalid training settings: {exc}") from exc
    if script_args.dataset_name is None:
        raise GraceUserError(
            "No training data: set dataset_name (a Hub id, a local .jsonl/.csv/.parquet file, or 'grace:wordnet')."
        )
    return script_args, args, model_args


def load_backbone(model_args: ModelConfig, trust_remote_code: bool = False) -> tuple[Any, Any, str]:
    """Policy model and tokenizer (left padding, a pad token) from a Hub id, a folder, or the embedded default."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..backbones import BackboneNotFoundError, resolve_backbone
    from ..modeling.generation import end_token_ids, pad_token_id_for

    location = resolve_backbone(model_args.model_name_or_path)
    kwargs: dict[str, Any] = dict(revision=model_args.model_revision, trust_remote_code=trust_remote_code)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, padding_side="left", **kwargs)
        dtype = model_args.dtype if model_args.dtype not in (None, "auto") else "float32"
        attention = {"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}
        model = AutoModelForCausalLM.from_pretrained(location, dtype=dtype, **attention, **kwargs)
    except OSError as exc:
        raise BackboneNotFoundError.unreachable(location, exc) from exc
    if tokenizer.pad_token_id is None:  # TRL pads with it; the same id the encoder pads with
        tokenizer.pad_token_id = pad_token_id_for(tokenizer, end_token_ids(model, tokenizer))
    return model, tokenizer, location


def run_training(script_args: GraceScriptArguments, args: GraceConfig, model_args: ModelConfig) -> dict[str, Any]:
    """Train, evaluate before/after, save and (optionally) push; returns the training summary.

    With several processes, all of them train; only the main one scores, saves and pushes (the others wait). The
    output folder is checked (see :mod:`.output_dir`) before anything slow, and locked by the main process for
    the whole run.
    """
    output_dir = Path(args.output_dir).expanduser().resolve()
    check_output_dir(output_dir, args.resume_from_checkpoint, args.overwrite_output_dir)
    args.distributed_state.wait_for_everyone()  # every process checked before the main one writes anything
    main_process = args.process_index == 0
    with output_dir_lock(output_dir) if main_process else nullcontext():
        if main_process and args.overwrite_output_dir and not resume_requested(args.resume_from_checkpoint):
            clear_checkpoints(output_dir)
        resume = resolve_resume(args.resume_from_checkpoint, output_dir / CHECKPOINTS, prune=main_process)
        return _train(script_args, args, model_args, output_dir, resume)


def _train(
    script_args: GraceScriptArguments, args: GraceConfig, model_args: ModelConfig, output_dir: Path, resume: str | None
) -> dict[str, Any]:
    from .heldout import heldout_score
    from .trainer import GraceGRPOTrainer

    started = time.time()
    push, args.push_to_hub = args.push_to_hub, False  # TRL would push the raw LM; the GRACE folder is pushed below
    if resume is not None:
        check_resumable(resume)  # before any pickle in it is loaded
    args.output_dir = str(output_dir / CHECKPOINTS)
    main_process = args.process_index == 0
    raw = load_source(script_args.dataset_name, script_args.dataset_train_split, script_args.dataset_config)
    policy, tokenizer, location = load_backbone(model_args, bool(getattr(args, "trust_remote_code", False)))
    limit = args.max_input_tokens if args.long_inputs == "drop" else None  # "truncate": the encoder cuts them
    dataset = prepare_dataset(raw, args.objective, tokenizer, limit, script_args.max_train_samples)

    if args.heldout_eval and resume is None and main_process:
        with tempfile.TemporaryDirectory() as workdir:
            base_model = grace_model_from_policy(policy, tokenizer, args, workdir)
            _remember(output_dir / CHECKPOINTS, BASE_SCORE, heldout_score(base_model, args, stage="base"))
            if args.learning_curve:
                _remember(output_dir / CHECKPOINTS, CURVE_START, curve_start(base_model, args))
            del base_model
    args.distributed_state.wait_for_everyone()
    stop = GracefulStop()
    trainer = GraceGRPOTrainer(
        policy,
        args,
        dataset,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        callbacks=[stop, TimeBudget(args.max_train_minutes)],
    )
    if args.learning_curve:
        trainer.add_callback(LearningCurve(trainer))
    _quiet_console(trainer, output_dir / CHECKPOINTS / LOG_FILE)
    trainer.train(resume_from_checkpoint=resume)
    if stop.requested is not None:
        logger.warning(
            f"stopped by signal {stop.requested} after step {trainer.state.global_step}; a checkpoint is in "
            f"{args.output_dir}. Resume with the same command plus --resume_from_checkpoint last."
        )
        raise SystemExit(128 + stop.requested)
    summary: dict[str, Any] = {}
    if main_process:
        policy = trainer.accelerator.unwrap_model(trainer.model)
        log = trainer.state.log_history
        curve = reward_curve(log)
        summary = _finish(policy, tokenizer, args, script_args, model_args, location, curve, output_dir, started, log)
        if push:
            from ..push import push_grace_model

            push_grace_model(output_dir, args.hub_model_id or output_dir.name, private=args.hub_private_repo)
    args.distributed_state.wait_for_everyone()
    return summary


def _quiet_console(trainer: Any, log_path: Path) -> None:
    """One progress bar instead of a printed dict per log (``train/console.py``); the dicts go to ``log_path``."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for printer in (ProgressCallback, PrinterCallback):
        trainer.pop_callback(printer)
    trainer.add_callback(GraceProgress(log_path))


def _finish(
    policy: Any,
    tokenizer: Any,
    args: GraceConfig,
    script_args: GraceScriptArguments,
    model_args: ModelConfig,
    location: str,
    curve: dict[str, Any],
    output_dir: Path,
    started: float,
    log_history: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Score the trained model, fill its card and save it with ``train_summary.json`` and ``learning_curve.png``."""
    from ..published_files import public_name
    from .heldout import heldout_examples, heldout_score

    base = _remembered(output_dir / CHECKPOINTS, BASE_SCORE) if args.heldout_eval else None
    with tempfile.TemporaryDirectory() as workdir:
        model = grace_model_from_policy(policy, tokenizer, args, workdir)
        trained = heldout_score(model, args) if args.heldout_eval else None
        card = model.model_card_data
        card.grace_examples = heldout_examples(model, args, script_args.num_card_examples)
        summary = training_summary(base, trained, curve, time.time() - started)
        if args.heldout_eval == "suite":
            summary["heldout"] = _suite_report(base, trained, args)
        if model_args.model_name_or_path is None:  # the embedded default backbone
            card.base_model, card.license = EMBEDDED_BACKBONE_ID, card.license or "apache-2.0"
        else:
            card.base_model = _hub_id(model_args.model_name_or_path) or card.base_model
        backbone_name = (card.base_model or Path(location).name).split("/")[-1]
        card.model_name = args.hub_model_id or f"GRACE {backbone_name} ({public_name(script_args.dataset_name)})"
        card.tags = sorted({*(card.tags or []), "trl", "grpo"})
        if _hub_id(script_args.dataset_name):
            card.datasets = [script_args.dataset_name]
        card.grace_training = card_training_record(
            args, script_args.dataset_name, location, base, trained, curve, summary
        )
        start = _remembered(output_dir / CHECKPOINTS, CURVE_START) if args.learning_curve else None
        plot = _learning_curve(log_history or [], args, summary, card.grace_training, workdir, start)
        save_trained_model(model, output_dir, summary, extra_files=plot)
    return summary


def _learning_curve(
    log_history: list[dict[str, Any]],
    args: GraceConfig,
    summary: dict,
    record: dict,
    workdir: str,
    start: dict[str, Any] | None = None,
) -> list[Path]:
    """The validation curve (from ``start``, the untrained model's point, when it was scored) into the summary and
    card record; the plot (rewards, and validation if scored) to ``workdir``, linked from the card. Returns the files
    to save beside the model."""
    from .curve_plot import LEARNING_CURVE_PNG, plot_learning_curve, reward_points
    from .learning_curve import validation_points

    points = ([start] if start else []) + validation_points(log_history) if args.learning_curve else []
    if args.learning_curve:
        summary["validation_curve"] = record["validation_curve"] = points
    plot = plot_learning_curve(reward_points(log_history), points, Path(workdir) / LEARNING_CURVE_PNG)
    if plot is None:
        return []
    record["learning_curve_image"] = LEARNING_CURVE_PNG
    return [plot]


def _suite_report(base: dict[str, Any] | None, trained: dict[str, Any] | None, args: GraceConfig) -> list[dict]:
    """The held-out suite's rows, or none (with a note) when the base scores were not kept, e.g. a run resumed from
    checkpoints of a run that did not score the suite."""
    from .heldout import suite_report

    if base is None or trained is None or "suite" not in base:
        logger.warning("no held-out suite base scores in the checkpoints folder; the report is skipped")
        return []
    return suite_report(base["suite"], trained["suite"], args.heldout_eval_resamples, seed=args.seed)


def _hub_id(name: str | None) -> str | None:
    """``name`` if it looks like a Hub id (not a local path or a built-in), else None."""
    if not is_hub_id(name):
        return None
    return name


BASE_SCORE = "base_score.json"
CURVE_START = "curve_start.json"
"""The untrained model's held-out scores and its learning-curve point, kept beside the checkpoints."""


def _remember(checkpoint_dir: Path, name: str, scores: dict[str, Any]) -> None:
    """Kept beside the checkpoints so that a resumed run reports the same untrained scores without recomputing them."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    (checkpoint_dir / name).write_text(json.dumps(scores), encoding="utf-8")


def _remembered(checkpoint_dir: Path, name: str) -> dict[str, Any] | None:
    marker = checkpoint_dir / name
    return json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else None


def main(argv: list[str] | None = None) -> int:
    script_args, args, model_args = parse_args(argv)
    output_dir = args.output_dir
    summary = run_training(script_args, args, model_args)
    if summary:  # the main process; the full summary is train_summary.json in the model folder
        print(f"grace: wrote the trained GRACE model to {output_dir}\n{summary_table(summary)}", file=sys.stderr)
    return 0
