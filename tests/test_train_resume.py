"""Resuming a run continues it bit for bit: weights, optimiser, scheduler, EMA, RNG and data position."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from embodied.checkpoint import CheckpointError
from embodied.data.synthetic import synthetic_spec, write_synthetic_dataset
from embodied.train import TrainConfig, train, train_to
from embodied.train_state import last_checkpoint
from policies.bc.configuration import BCConfig

N, K = 12, 5
# language_motion_prob > 0 makes the loss draw random numbers: the RNG state must be restored too.
POLICY = BCConfig(obs_horizon=2, action_horizon=3, cnn_channels=(8,), feature_dim=16, hidden_dim=32,
                  language_motion_prob=0.5)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    return write_synthetic_dataset(root / "data", num_episodes=3, length=8,
                                   spec=synthetic_spec(cameras=("front",), size=24))


def config(data, out, **kw):
    base = {"dataset": (str(data),), "output_dir": str(out), "name": "run", "steps": N, "batch_size": 4, "lr": 1e-3,
            "warmup_steps": 3, "log_every": 1, "save_every": K, "ema_decay": 0.8, "num_workers": 0, "progress": False}
    return TrainConfig(**base | kw)


def final_state(run_dir):
    ckpt = last_checkpoint(run_dir)
    state = json.loads((ckpt / "training_state" / "state.json").read_text())
    state["extra"].pop("elapsed_s")
    return (state, load_file(str(ckpt / "training_state" / "tensors.safetensors")),
            load_file(str(ckpt / "pretrained_model" / "model.safetensors")))


def assert_same_run(a, b, steps=N):
    (state_a, tensors_a, policy_a), (state_b, tensors_b, policy_b) = final_state(a), final_state(b)
    assert state_a["step"] == state_b["step"] == steps
    assert state_a == state_b  # optimiser hyper-parameters and step counts, scheduler, EMA counter
    assert tensors_a.keys() == tensors_b.keys()
    assert any(k.startswith("optimizer/") for k in tensors_a) and any(k.startswith("ema/") for k in tensors_a)
    different = [k for k in tensors_a if not torch.equal(tensors_a[k], tensors_b[k])]
    assert not different, f"resumed run differs in {different[:5]}"
    assert all(torch.equal(policy_a[k], policy_b[k]) for k in policy_a)
    losses = [[json.loads(line)["loss"] for line in (d / "metrics.jsonl").read_text().splitlines()] for d in (a, b)]
    assert losses[0] == losses[1] and len(losses[0]) == steps


def test_stop_and_resume_equals_the_uninterrupted_run(data, tmp_path):
    # The straight run loads batches in worker processes, the split one in the main process: same data order.
    straight = train(config(data, tmp_path / "straight", num_workers=2), POLICY)
    stopped = train(config(data, tmp_path / "split", stop_at=K), POLICY)
    assert json.loads((stopped / "checkpoints" / "last").read_text())["step"] == K
    # Scramble this process's RNGs: the resumed run must take its random state from the checkpoint.
    torch.manual_seed(1234), np.random.seed(1234), random.seed(1234)
    resumed = train(config(data, tmp_path / "split", resume=True), POLICY)
    assert resumed == stopped
    assert_same_run(straight, resumed)
    assert json.loads((resumed / "config.json").read_text())["resumed_at"] == [K]


def test_train_to_starts_resumes_and_then_leaves_a_finished_run_alone(data, tmp_path):
    # How a benchmark carries a long run across sittings: the same call each time, the run's own minutes back.
    minutes = train_to(config(data, tmp_path, steps=4, save_every=2), POLICY)
    assert json.loads((tmp_path / "run" / "checkpoints" / "last").read_text())["step"] == 4 and minutes > 0
    more = train_to(config(data, tmp_path, steps=6, save_every=2), POLICY)  # a larger budget resumes the run
    assert json.loads((tmp_path / "run" / "checkpoints" / "last").read_text())["step"] == 6 and more > minutes
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert train_to(config(data, tmp_path, steps=6, save_every=2), POLICY) == more
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == metrics  # nothing trained again
    with pytest.raises(ValueError, match="needs the run's name"):
        train_to(config(data, tmp_path, name=None), POLICY)


def test_resume_refuses_a_different_run_config(data, tmp_path):
    train(config(data, tmp_path, stop_at=2), POLICY)
    with pytest.raises(ValueError, match="train.lr"):
        train(config(data, tmp_path, resume=True, lr=5e-4), POLICY)
    with pytest.raises(ValueError, match="policy.hidden_dim"):
        train(config(data, tmp_path, resume=True), BCConfig(**{**POLICY.__dict__, "hidden_dim": 64}))


def test_a_run_started_before_a_config_field_existed_resumes_at_that_fields_default(data, tmp_path):
    run_dir = train(config(data, tmp_path, stop_at=2, save_every=2), POLICY)
    saved = json.loads((run_dir / "config.json").read_text())
    del saved["policy"]["state_keys"], saved["train"]["grad_clip"]  # as an older version wrote it
    (run_dir / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"policy.state_keys: \[\] -> \['ee_pos'\]"):
        train(config(data, tmp_path, resume=True), BCConfig(**{**POLICY.__dict__, "state_keys": ("ee_pos",)}))
    train(config(data, tmp_path, resume=True, stop_at=3), POLICY)
    assert json.loads((run_dir / "checkpoints" / "last").read_text())["step"] == 3


def test_a_run_folder_is_never_overwritten_and_resume_needs_a_checkpoint(data, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(config(data, tmp_path, resume=True), POLICY)
    train(config(data, tmp_path, stop_at=1, save_every=1), POLICY)
    with pytest.raises(FileExistsError, match="--train.resume"):
        train(config(data, tmp_path), POLICY)


def test_resume_from_a_damaged_training_state_names_the_file(data, tmp_path):
    run_dir = train(config(data, tmp_path, stop_at=2, save_every=2), POLICY)
    tensors = last_checkpoint(run_dir) / "training_state" / "tensors.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="tensors.safetensors"):
        train(config(data, tmp_path, resume=True), POLICY)


@pytest.mark.slow
def test_resume_after_a_real_kill_equals_the_uninterrupted_run(data, tmp_path):
    """SIGKILL a training process once it has saved step K, resume it from the shell: same final state."""
    steps, every = 40, 10

    def args_for(out):
        return [sys.executable, "-m", "embodied.train", "bc", "--train.dataset", str(data),
                "--train.output-dir", str(out), "--train.name", "run", "--train.steps", str(steps),
                "--train.batch-size", "4", "--train.lr", "1e-3", "--train.warmup-steps", "3", "--train.log-every", "1",
                "--train.save-every", str(every), "--train.ema-decay", "0.8", "--train.num-workers", "0",
                "--train.no-progress", "--policy.obs-horizon", "2", "--policy.action-horizon", "3",
                "--policy.cnn-channels", "8", "--policy.feature-dim", "16", "--policy.hidden-dim", "32",
                "--policy.language-motion-prob", "0.5"]

    # Both runs go through the same command in fresh processes, so nothing of this test process
    # (thread settings, caches) can make them differ.
    subprocess.run(args_for(tmp_path / "straight"), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    straight = tmp_path / "straight" / "run"
    args = args_for(tmp_path / "killed")
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pointer = tmp_path / "killed" / "run" / "checkpoints" / "last"
    deadline = time.monotonic() + 120
    while not pointer.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the process finished before it could be killed"
    killed_at = json.loads(pointer.read_text())["step"]
    assert killed_at < steps
    subprocess.run(args + ["--train.resume"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert_same_run(straight, tmp_path / "killed" / "run", steps)
