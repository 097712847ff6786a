"""The training entry point end to end on a tiny model: stop on SIGTERM, resume, and the saved GRACE folder."""

from __future__ import annotations

import json
import os
import signal

import pytest
import yaml
from sentence_transformers import SentenceTransformer

from grace_st.train import run as run_module
from grace_st.train.trainer import GraceGRPOTrainer


def _argv(backbone, data, out, **overrides):
    settings = {
        "model_name_or_path": str(backbone),
        "dataset_name": str(data),
        "output_dir": str(out),
        "max_steps": 4,
        "save_steps": 100,  # no periodic checkpoint before the signal: the stop itself must save
        "per_device_train_batch_size": 4,
        "num_generations": 2,
        "max_completion_length": 8,
        "max_input_tokens": 64,
        "learning_rate": 1e-3,
        "gradient_checkpointing": False,
        "report_to": "none",
        "num_card_examples": 1,
        "seed": 0,
        **overrides,
    }
    return [f"--{key}={value}" for key, value in settings.items()]


def _rewards(folder):
    state = json.loads((folder / "trainer_state.json").read_text())
    return {entry["step"]: entry["reward"] for entry in state["log_history"] if "reward" in entry}


def test_sigterm_saves_a_checkpoint_and_resume_loses_no_step(tiny_backbone, data_file, tmp_path, monkeypatch, capfd):
    out = tmp_path / "out"
    scored = {"truncation_penalty": "null"}  # 8-token rationales rarely end: score them, so rewards vary
    original_step = GraceGRPOTrainer.training_step

    def step_then_signal(self, *args, **kwargs):
        loss = original_step(self, *args, **kwargs)
        if self.state.global_step == 1:  # inside step 2: as if the job scheduler sent SIGTERM now
            os.kill(os.getpid(), signal.SIGTERM)
        return loss

    monkeypatch.setattr(GraceGRPOTrainer, "training_step", step_then_signal)
    with pytest.raises(SystemExit) as stopped:
        run_module.main(_argv(tiny_backbone, data_file, out, **scored))
    assert stopped.value.code == 128 + signal.SIGTERM
    checkpoint = out / "checkpoints" / "checkpoint-2"
    assert checkpoint.is_dir() and not (out / "modules.json").exists()  # stopped: no final model pretended
    before = _rewards(checkpoint)
    assert sorted(before) == [1, 2]

    monkeypatch.setattr(GraceGRPOTrainer, "training_step", original_step)
    summary = run_module.run_training(
        *run_module.parse_args(_argv(tiny_backbone, data_file, out, resume_from_checkpoint="last", **scored))
    )
    assert summary["steps"] == 4
    assert summary["reward_per_step"][:2] == [before[1], before[2]]  # steps 1-2 kept, not redone
    # the rollouts' random stream was checkpointed too: the resumed steps sample what an unbroken run samples
    unbroken = run_module.run_training(
        *run_module.parse_args(_argv(tiny_backbone, data_file, tmp_path / "u", **scored))
    )
    assert len(set(summary["reward_per_step"])) == 4, "rewards depend on what was sampled"
    assert summary["reward_per_step"] == pytest.approx(unbroken["reward_per_step"], abs=1e-6)

    # the console shows a bar, not the logged dicts; those are in the log file, once per step across the resume
    console = capfd.readouterr()
    assert "'reward':" not in console.out + console.err and "{'loss'" not in console.out + console.err
    logged = [json.loads(line) for line in (out / "checkpoints" / "train_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in logged if "reward" in entry] == [1, 2, 3, 4]

    # the output folder is the GRACE model, with its checkpoints, summary and card
    assert (out / "checkpoints" / "checkpoint-4").is_dir()
    on_disk = json.loads((out / "train_summary.json").read_text())
    for key in ("base_score", "trained_score", "metric", "first_reward", "last_reward", "wall_seconds"):
        assert key in on_disk
    model = SentenceTransformer(str(out), trust_remote_code=True, device="cpu")
    assert model.encode(["a new text"]).shape == (1, model.get_embedding_dimension())
    card = (out / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---")[1])
    assert {"grace", "trl", "grpo", "sentence-transformers"} <= set(metadata["tags"])
    assert metadata["library_name"] == "sentence-transformers"
    assert "## Training" in card and "trust_remote_code=True" in card


def test_two_processes_share_in_batch_negatives(tiny_backbone, data_file, tmp_path):
    """With 2 CPU processes (torchrun + gloo), each reward sees both processes' examples."""
    import subprocess
    import sys

    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "grace_st.train"]
    command += _argv(tiny_backbone, data_file, out, max_steps=1, num_card_examples=0, use_cpu=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads((out / "checkpoints" / "checkpoint-1" / "trainer_state.json").read_text())
    logged = [entry for entry in state["log_history"] if "grace/examples_in_reward" in entry]
    # 4 completions per process / 2 rollouts = 2 examples per process; gathered: 4
    assert logged and logged[0]["grace/examples_in_reward"] == 4
    assert (out / "modules.json").is_file()


def test_push_to_hub_in_the_config_publishes_the_grace_folder(tiny_backbone, data_file, tmp_path, monkeypatch):
    import httpx2
    import huggingface_hub
    from fake_hub import FakeHub

    hub = FakeHub()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    huggingface_hub.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(hub)))
    try:
        overrides = {"max_steps": 1, "push_to_hub": True, "hub_model_id": "me/grace-run", "num_card_examples": 0}
        run_module.run_training(*run_module.parse_args(_argv(tiny_backbone, data_file, tmp_path / "o", **overrides)))
    finally:
        huggingface_hub.set_client_factory(huggingface_hub.utils._http.default_client_factory)
    assert {"modules.json", "model.safetensors", "README.md", "train_summary.json"} <= set(hub.files)
    assert not any("checkpoint" in name for name in hub.files)  # TRL did not push the raw LM's checkpoints
    assert sum(path.endswith("/commit/main") for path in hub.paths) == 1


def test_unreachable_backbone_and_missing_data_are_one_line_errors(tiny_backbone, data_file, tmp_path, capsys):
    from grace_st.cli import main as grace_main

    code = grace_main(["train", *_argv(tmp_path / "no-such-model", data_file, tmp_path / "o")])
    assert code == 2 and "no-such-model" in capsys.readouterr().err
    code = grace_main(["train", *_argv(tiny_backbone, tmp_path / "none.jsonl", tmp_path / "o")])
    assert code == 2 and "none.jsonl" in capsys.readouterr().err


def test_heldout_scores_before_and_after_go_into_summary_and_card(tiny_backbone, data_file, tmp_path):
    overrides = {"max_steps": 1, "heldout_eval": "wordnet", "heldout_eval_queries": 4, "num_card_examples": 1}
    out = tmp_path / "o"
    summary = run_module.run_training(*run_module.parse_args(_argv(tiny_backbone, data_file, out, **overrides)))
    assert summary["metric"] == "GraceWordNetDefinitionRetrieval ndcg_at_10"
    assert 0 <= summary["base_score"] <= 1 and 0 <= summary["trained_score"] <= 1
    assert json.loads((out / "train_summary.json").read_text())["base_score"] == summary["base_score"]
    card = (out / "README.md").read_text()
    assert "| GraceWordNetDefinitionRetrieval | ndcg_at_10 |" in card
    assert "**Rationale:**" in card
