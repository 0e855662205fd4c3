"""The pieces under the training loop: windows from several datasets (in RAM or memory-mapped), the resumable
sharded sampler, the LR schedule, the CLI config type, training-state files and the metric plots."""

import dataclasses
import itertools
import json
import math
import random

import numpy as np
import pytest
import torch
import tyro

from embodied.data import open_dataset
from embodied.data.synthetic import synthetic_spec, write_synthetic_dataset
from embodied.plots import plot_metrics, read_metrics
from embodied.torch_data import ShardedBatchSampler, WindowDataset, collate, merged_stats, scene_pools
from embodied.train import TrainConfig, lr_factor, train, train_config_type
from embodied.train_state import EMA, rng_state, set_rng_state
from policies.bc.configuration import BCConfig


@pytest.fixture(scope="module")
def two_datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    spec = synthetic_spec(size=16)
    a = write_synthetic_dataset(root / "a", num_episodes=2, length=6, spec=spec)
    b = write_synthetic_dataset(root / "b", num_episodes=1, length=5, spec=spec, tasks=("close the drawer",))
    return open_dataset(a), open_dataset(b)


@pytest.mark.parametrize("on_disk", [False, True])
def test_windows_of_mixed_datasets_equal_the_data_layers_windows(two_datasets, tmp_path, on_disk):
    cache = tmp_path / "cache" if on_disk else None
    data = WindowDataset(two_datasets, obs_horizon=2, action_horizon=3, cameras=("wrist",), future_offset=2,
                         cache_dir=cache)
    expected = [w | {"dataset_index": d} for d, ds in enumerate(two_datasets)
                for w in ds.windows(2, 3, cameras=("wrist",), future_offset=2)]
    assert len(data) == len(expected) == 17
    for i, want in enumerate(expected):
        got = data[i]
        assert got["sample_index"] == i
        for key, value in want.items():
            assert np.array_equal(np.asarray(got[key]), np.asarray(value)), (i, key)
    assert data.locate(14) == (1, 0, 2)
    if on_disk:
        assert isinstance(data[0]["observation.images.wrist"], np.ndarray)
        marker = (cache / "frames.json").stat().st_mtime_ns
        again = WindowDataset(two_datasets, 2, 3, cameras=("wrist",), future_offset=2, cache_dir=cache)
        assert (cache / "frames.json").stat().st_mtime_ns == marker, "a complete cache must be reused, not rebuilt"
        assert np.array_equal(again[16]["future.images.wrist"], data[16]["future.images.wrist"])


def test_collate_keeps_dtypes_and_strings(two_datasets):
    data = WindowDataset(two_datasets[:1], obs_horizon=2, action_horizon=3)
    batch = collate([data[0], data[7]])
    assert batch["observation.images.front"].dtype == torch.uint8
    assert batch["observation.images.front"].shape == (2, 2, 16, 16, 3)
    assert batch["observation.state"].dtype == torch.float32 and batch["action"].shape == (2, 3, 7)
    assert batch["obs_mask"].dtype == torch.bool and batch["obs_mask"].tolist() == [[False, True], [True, True]]
    assert batch["task"] == ["pick up the red cube", "open the drawer"]


def test_datasets_of_different_embodiments_are_not_mixed(two_datasets, tmp_path):
    other = open_dataset(write_synthetic_dataset(tmp_path / "c", 1, 4, spec=synthetic_spec(size=16, rate_hz=5.0)))
    with pytest.raises(ValueError, match="cannot mix"):
        WindowDataset([two_datasets[0], other])


def test_merged_stats_cover_every_frame(two_datasets):
    stats = merged_stats(two_datasets)
    assert stats["action"]["count"][0] == 17
    actions = np.concatenate([ds.episode(i).actions for ds in two_datasets for i in range(ds.num_episodes)])
    np.testing.assert_allclose(stats["action"]["mean"], actions.mean(0), rtol=1e-5, atol=1e-7)


def test_a_scene_datasets_windows_teach_perception_and_never_actions(two_datasets, tmp_path):
    """A scene dataset (recorded with demonstrations=False) mixes in like any other, but its windows' action_mask
    is all False, so no policy imitates the moves that only placed the camera; and its actions do not stretch
    the action statistics the policy's outputs are normalised by. Scenes alone are no training set."""
    from embodied.data import DatasetWriter
    from embodied.data.errors import DatasetSpecError

    spec = two_datasets[0].spec
    scenes = open_dataset(write_synthetic_dataset(tmp_path / "scenes", 2, 4, spec=spec, demonstrations=False))
    assert not scenes.demonstrations and two_datasets[0].demonstrations
    data = WindowDataset([two_datasets[0], scenes], obs_horizon=1, action_horizon=3)
    demo_windows, scene_windows = range(12), range(12, 20)
    assert all(data[i]["action_mask"].any() for i in demo_windows)
    assert not any(data[i]["action_mask"].any() for i in scene_windows)
    assert data[12]["task"] == "pick up the red cube"  # its instruction and images are there to learn from
    assert data.demonstrated.tolist() == [True] * 12 + [False] * 8
    stats = merged_stats([two_datasets[0], scenes])
    for key in ("min", "max", "mean"):
        np.testing.assert_array_equal(stats["action"][key], two_datasets[0].stats["action"][key])
    assert stats["observation.state"]["count"][0] == 12 + 8
    with pytest.raises(ValueError, match="all scene datasets"):
        WindowDataset([scenes])
    with pytest.raises(DatasetSpecError, match="holds scenes"):
        DatasetWriter(tmp_path / "scenes", spec)  # appending demonstrations to a scene dataset


def test_sampler_order_is_a_function_of_seed_and_position():
    full = list(ShardedBatchSampler(10, 4, seed=3, start=0, stop=7))
    resumed = list(ShardedBatchSampler(10, 4, seed=3, start=4, stop=7))
    assert resumed == full[4:]
    flat = [i for b in full for i in b]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))  # epoch by epoch
    assert full != list(ShardedBatchSampler(10, 4, seed=4, start=0, stop=7))


def test_ranks_get_disjoint_slices_of_each_global_batch():
    ranks = [list(ShardedBatchSampler(12, 3, seed=0, rank=r, world_size=2, stop=4)) for r in (0, 1)]
    for a, b in zip(*ranks):
        assert len(a) == len(b) == 3 and not set(a) & set(b)
    single = list(ShardedBatchSampler(12, 6, seed=0, stop=4))
    assert [a + b for a, b in zip(*ranks)] == single  # the same global batches as one process with 2x the batch


def test_scene_share_fixes_each_batchs_mixture_of_scenes_and_demonstrations():
    """3 demonstration windows among 40 would be one sample in 13 by frames; scene_share=0.5 makes it half of
    every batch, each pool still in epoch-by-epoch order and resumable at any batch."""
    demonstrated = np.array([True] * 3 + [False] * 37)
    pools, pool_batch = scene_pools(demonstrated, batch_size=4, scene_share=0.5)
    assert pool_batch == (2, 2)
    full = list(ShardedBatchSampler(40, 4, seed=1, stop=30, pools=pools, pool_batch=pool_batch))
    assert all(sum(demonstrated[i] for i in b) == 2 for b in full)
    demos = [i for b in full for i in b if demonstrated[i]]
    assert sorted(demos[:3]) == [0, 1, 2] and sorted(demos[3:6]) == [0, 1, 2]  # every demonstration each epoch
    scenes = [i for b in full for i in b if not demonstrated[i]]
    assert sorted(scenes[:37]) == list(range(3, 40))
    assert list(ShardedBatchSampler(40, 4, seed=1, start=11, stop=30, pools=pools, pool_batch=pool_batch)) == full[11:]
    ranks = [list(ShardedBatchSampler(40, 2, seed=1, rank=r, world_size=2, stop=30, pools=pools, pool_batch=(1, 1)))
             for r in (0, 1)]
    single = list(ShardedBatchSampler(40, 4, seed=1, stop=30, pools=pools, pool_batch=(2, 2)))
    assert [sorted(a + b) for a, b in zip(*ranks)] == [sorted(b) for b in single]  # as one process, 2x the batch
    with pytest.raises(ValueError, match="leaves no demonstration"):
        scene_pools(demonstrated, batch_size=4, scene_share=0.9)
    with pytest.raises(ValueError, match="no dataset is a scene dataset"):
        scene_pools(np.ones(5, bool), batch_size=4, scene_share=0.5)


def test_lr_schedule_warms_up_then_decays():
    f = [lr_factor(s, warmup_steps=10, total_steps=110, schedule="cosine", min_lr_ratio=0.1) for s in range(110)]
    assert f[0] == pytest.approx(0.1) and f[9] == 1.0 and f[10] == 1.0
    assert f[60] == pytest.approx(0.1 + 0.9 * 0.5) and all(a >= b for a, b in itertools.pairwise(f[10:]))
    assert lr_factor(500, warmup_steps=10, total_steps=110, schedule="constant", min_lr_ratio=0.1) == 1.0


def test_train_config_type_nests_the_policys_config_for_tyro():
    cls = train_config_type("bc")
    cfg = tyro.cli(cls, args=["--train.dataset", "d1", "d2", "--train.steps", "7", "--policy.action-horizon", "5",
                              "--policy.language", "concat", "--train.mixed-precision", "bf16"])
    assert cfg.train == TrainConfig(dataset=("d1", "d2"), policy="bc", steps=7, mixed_precision="bf16")
    assert cfg.policy == BCConfig(action_horizon=5, language="concat")
    with pytest.raises(SystemExit):
        tyro.cli(cls, args=["--train.mixed-precision", "fp8"])


def test_bad_train_configs_are_refused_before_anything_runs(two_datasets, tmp_path):
    with pytest.raises(ValueError, match="no dataset"):
        train(TrainConfig())
    with pytest.raises(ValueError, match="--train.name"):
        train(TrainConfig(dataset=("x",), resume=True))
    with pytest.raises(ValueError, match="stop_at"):
        train(TrainConfig(dataset=("x",), steps=5, stop_at=9))
    with pytest.raises(ValueError, match="fp16 mixed precision needs a GPU"):
        train(TrainConfig(dataset=(str(two_datasets[0].root),), cpu=True, mixed_precision="fp16",
                          output_dir=str(tmp_path)))
    with pytest.raises(TypeError, match="takes a BCConfig"):
        train(TrainConfig(dataset=(str(two_datasets[0].root),)), policy_config=TrainConfig())


def test_bf16_autocast_trains_on_the_cpu(two_datasets, tmp_path):
    run = train(TrainConfig(dataset=tuple(str(ds.root) for ds in two_datasets), output_dir=str(tmp_path),
                            name="bf16", steps=3, batch_size=4, log_every=1, num_workers=0, cpu=True,
                            mixed_precision="bf16", progress=False),
                BCConfig(language="none", cnn_channels=(8,), feature_dim=16, hidden_dim=32))
    losses = [m["loss"] for m in read_metrics(run / "metrics.jsonl")]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert json.loads((run / "config.json").read_text())["windows"] == 17


def test_ema_starts_fast_and_follows_the_weights():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.99)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # the first decay is (1 + 1) / (10 + 1), not 0.99: early averages move fast
    torch.testing.assert_close(ema.shadow["weight"], start + (9 / 11) * (1.0 - start))
    w0 = model.weight.detach().clone()
    with ema.applied(model):
        assert torch.equal(model.weight, ema.shadow["weight"])
    assert torch.equal(model.weight, w0), "the raw weights must come back after applied()"
    for _ in range(2000):
        ema.update(model)
    assert torch.allclose(ema.shadow["weight"], w0, atol=1e-6)


def test_rng_state_round_trips_through_safetensors_and_json(tmp_path):
    from safetensors.torch import load_file, save_file

    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    tensors, plain = rng_state()
    save_file(tensors, str(tmp_path / "rng.safetensors"))
    (tmp_path / "rng.json").write_text(json.dumps(plain))
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    set_rng_state(load_file(str(tmp_path / "rng.safetensors")), json.loads((tmp_path / "rng.json").read_text()))
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1]) and random.random() == expected[2]


def test_plots_are_drawn_from_metrics_and_skip_a_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": s, "loss": 1 / s, "loss_mse": 1 / s, "lr": 1e-3, "samples_per_s": 100.0})
             for s in range(1, 6)]
    lines.append(json.dumps({"step": 5, "success_rate": 0.4}))
    path.write_text("\n".join(lines) + '\n{"step": 6, "lo')
    assert len(read_metrics(path)) == 6
    written = plot_metrics(path, tmp_path)
    assert [p.name for p in written] == ["loss.png", "training.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in written)


def test_config_overrides_read_json_values_and_name_the_fields_on_a_typo():
    from embodied.train import config_overrides
    from policies.mdt import MDTConfig

    got = config_overrides(MDTConfig(), ["goal_film=true", "cnn_widths=[16,32]", "goal_camera=wrist"])
    assert got == {"goal_film": True, "cnn_widths": [16, 32], "goal_camera": "wrist"}
    assert dataclasses.replace(MDTConfig(), **got).cnn_widths == (16, 32)
    with pytest.raises(ValueError, match=r"'goal_flim=true' is not FIELD=VALUE .* 'goal_film'"):
        config_overrides(MDTConfig(), ["goal_flim=true"])
