"""Train the BC baseline with the one loop on a tiny real dataset: it overfits, and the run folder holds
everything a user needs (config, metrics, plots, checkpoints loadable as policies)."""

import json

import numpy as np
import pytest

from embodied.checkpoint import load_policy
from embodied.data import open_dataset
from embodied.data.synthetic import synthetic_spec, write_synthetic_dataset
from embodied.train import TrainConfig, load_run_config, train
from embodied.train_state import last_checkpoint, pretrained_dir
from embodied.types import EmbodimentSpec
from policies.bc.configuration import BCConfig

STEPS = 150


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("overfit")
    data = write_synthetic_dataset(root / "data", num_episodes=2, length=10,
                                   spec=synthetic_spec(cameras=("front",), size=32))
    cfg = TrainConfig(dataset=(str(data),), output_dir=str(root / "runs"), name="bc-tiny", steps=STEPS,
                      batch_size=20, lr=3e-3, schedule="constant", warmup_steps=10, log_every=25, save_every=100,
                      num_workers=0, ema_decay=0.9, progress=False)
    policy_cfg = BCConfig(action_horizon=2, cnn_channels=(8, 16), feature_dim=32, hidden_dim=128)
    return train(cfg, policy_cfg), cfg, policy_cfg, data


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_bc_overfits_a_tiny_dataset_to_near_zero_loss(run):
    run_dir = run[0]
    lines = metrics(run_dir)
    assert lines[0]["loss"] > 0.05, "the first losses should be those of an untrained network"
    assert lines[-1]["loss"] < 1e-2, f"BC did not overfit 20 windows: {[m['loss'] for m in lines]}"


def test_trained_checkpoint_reproduces_the_demonstrated_actions(run):
    run_dir, _, _, data = run
    ds = open_dataset(data)
    policy = load_policy(pretrained_dir(run_dir), expect_spec=ds.spec)
    errors = []
    for i in range(ds.num_episodes):
        ep = ds.episode(i)
        for t in range(len(ep)):
            chunk = policy.act(ep.observation(t)).value
            policy.reset()
            n = min(len(chunk), len(ep) - t)
            errors.append(np.abs(chunk[:n] - ep.actions[t:t + n]).max())
    span = ds.spec.action.high_array - ds.spec.action.low_array
    assert max(errors) < 0.1 * span.min(), f"largest action error {max(errors)} of a range {span.min()}"


def test_run_folder_holds_config_metrics_plots_and_checkpoints(run):
    run_dir = run[0]
    for name in ("config.json", "metrics.jsonl", "loss.png", "training.png", "ranks/rank0.json"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    steps = sorted(p.name for p in (run_dir / "checkpoints").glob("step_*"))
    assert steps == ["step_000100", f"step_{STEPS:06d}"]
    assert json.loads((run_dir / "checkpoints" / "last").read_text()) == {"step": STEPS, "dir": f"step_{STEPS:06d}"}
    assert last_checkpoint(run_dir).name == f"step_{STEPS:06d}"
    for step in steps:
        ckpt = run_dir / "checkpoints" / step
        assert {p.name for p in (ckpt / "pretrained_model").iterdir()} == {
            "policy.json", "model.safetensors", "normalization.safetensors", "embodiment_spec.json"}
        assert {p.name for p in (ckpt / "training_state").iterdir()} == {
            "state.json", "tensors.safetensors", "rng_rank0.json", "rng_rank0.safetensors"}
    line = metrics(run_dir)[-1]
    assert {"step", "loss", "loss_mse", "lr", "samples_per_s", "data_share", "time"} <= set(line)
    assert line["step"] == STEPS and line["samples_per_s"] > 0 and 0 <= line["data_share"] <= 1


def test_config_json_round_trips_to_the_same_configs(run):
    run_dir, cfg, policy_cfg, data = run
    train_back, policy_back = load_run_config(run_dir)
    assert train_back == cfg
    assert policy_back == policy_cfg
    saved = json.loads((run_dir / "config.json").read_text())
    assert EmbodimentSpec.from_dict(saved["spec"]) == open_dataset(data).spec
    assert saved["data_requirements"] == {"obs_horizon": 1, "action_horizon": 2, "cameras": ["front"],
                                          "future_offset": None}


def test_checkpoint_holds_ema_weights_and_training_state_the_raw_ones(run):
    from safetensors.torch import load_file

    ckpt = last_checkpoint(run[0])
    ema = load_file(str(ckpt / "pretrained_model" / "model.safetensors"))
    state = load_file(str(ckpt / "training_state" / "tensors.safetensors"))
    assert set(ema) == {k[len("ema/"):] for k in state if k.startswith("ema/")}
    assert all((ema[k] == state["ema/" + k]).all() for k in ema)
    assert any(not (ema[k] == state["model/" + k]).all() for k in ema), "EMA weights equal the raw ones"
    assert not any("bert" in k or "embeddings" in k for k in ema), "the frozen MiniLM must not be saved"
