"""The locator (policies/mdt/locator.py): where the named object and its destination are, from RGB-D.

    embodied train mdt --train.dataset data scenes --policy.stage locator --policy.language-tokens \
        --policy.image-size 128 128                  # learns from the simulator's goal_points, no actions
    MDTPolicy.from_pretrained(run).carrying_locator(locator_run).save_pretrained(out)   # then acts on its points

A policy trained on the simulator's exact goal points then acts on what the
locator reads from its cameras, and never on the simulator's.
"""

import dataclasses
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import pytest
import torch

from embodied.batching import observations_to_batch
from embodied.checkpoint import CheckpointError
from embodied.collect import CollectConfig, collect
from embodied.data import open_dataset
from embodied.sim import make_embodiment
from embodied.torch_data import WindowDataset, collate
from embodied.train import TrainConfig, train
from embodied.train_state import pretrained_dir
from policies.mdt import MDTConfig, MDTPolicy
from policies.mdt.locator import surface_points

LOCATOR = MDTConfig(stage="locator", language_tokens=True, cnn_widths=(8, 16, 16), cnn_groups=4, d_model=32,
                    n_heads=2, image_size=(32, 32), random_shift=0)
POLICY = MDTConfig(cnn_widths=(8, 8), cnn_groups=4, d_model=32, n_heads=2, encoder_layers=1, decoder_layers=2,
                   image_size=(32, 32), mgf_image_size=(16, 16), mgf_patch=8, mgf_dim=32, cla_dim=16,
                   state_keys=("gripper",), hand_relative=("goal_points",), hand_relative_noise=0.005)
LOOP = {"batch_size": 16, "lr": 3e-3, "warmup_steps": 1, "log_every": 50, "num_workers": 0, "progress": False}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Two pick demonstrations and twenty pick scenes at 32 px, with depth."""
    root = tmp_path_factory.mktemp("locator")
    cfg = CollectConfig(tasks=("tabletop/pick-v0",), episodes_per_task=2, image_size=32, workers=1, seed=0,
                        out=root / "demos", depth=True)
    collect(cfg, progress=False)
    collect(dataclasses.replace(cfg, episodes_per_task=20, seed=100_000, scenes_only=True, out=root / "scenes"),
            progress=False)
    return root / "demos", root / "scenes"


@pytest.fixture(scope="module")
def locator_run(recorded, tmp_path_factory):
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("locator_runs")
    return train(TrainConfig(dataset=tuple(map(str, recorded)), policy="mdt", steps=400, save_every=400,
                             name="locator", output_dir=str(out), **LOOP), LOCATOR)


@pytest.fixture(scope="module")
def policy_run(recorded, tmp_path_factory):
    """A tiny policy trained on the simulator's goal points (read as offsets from the hand)."""
    demos, _ = recorded
    return train(TrainConfig(dataset=(str(demos),), policy="mdt", steps=3, save_every=3, name="policy",
                             output_dir=str(tmp_path_factory.mktemp("policy_runs")), **LOOP), POLICY)


def located_errors_cm(policy: MDTPolicy, dataset) -> np.ndarray:
    """(frames, 2) how far the policy's located subject and destination land from the simulator's, cm."""
    windows = WindowDataset([dataset], 1, 1, depth=True)
    batch = collate([windows[i] for i in range(0, len(windows), 4)])
    truth = torch.as_tensor(batch["observation.state"])[:, -1, policy._privileged_index].view(-1, 2, 3)
    return (100 * (policy.locate(batch).view(-1, 2, 3) - truth).norm(dim=-1)).numpy()


def test_surface_points_back_project_each_blocks_nearest_reading():
    depth = torch.ones(1, 8, 8)
    depth[0, 1, 3] = 0.5  # something nearer in the top-left block
    depth[0, 4:, :4] = 0  # no reading in the bottom-left block
    K = torch.tensor([[[10.0, 0, 4], [0, 10, 4], [0, 0, 1]]])
    T = torch.eye(4)[None].clone()
    T[0, :3, 3] = torch.tensor([1.0, 2.0, 3.0])
    world, found = surface_points(depth, K, T, cell=4)
    assert world.shape == (1, 2, 2, 3) and found.tolist() == [[[True, True], [False, True]]]
    # the block's centre pixel (2, 2) at the nearest reading, 0.5 m: ((2-4)/10·0.5, (2-4)/10·0.5, 0.5) + t
    assert world[0, 0, 0].tolist() == pytest.approx([0.9, 1.9, 3.5])
    assert world[0, 1, 1].tolist() == pytest.approx([1.2, 2.2, 4.0])  # pixel (6, 6) at 1 m
    with pytest.raises(ValueError, match="do not split"):
        surface_points(torch.ones(1, 6, 8), K, T, cell=4)


def test_a_locator_learns_where_the_named_object_and_its_destination_are(recorded, locator_run, one_thread):
    demos, _ = recorded
    data = open_dataset(demos)
    torch.manual_seed(0)
    untrained = MDTPolicy.from_dataset_meta(LOCATOR, data.spec, data.stats)
    trained = MDTPolicy.from_pretrained(pretrained_dir(locator_run))
    assert trained.data_requirements()["depth"] and trained.locates
    before, after = located_errors_cm(untrained, data), located_errors_cm(trained, data)
    print(f"median error before {np.median(before, 0)} cm, after {np.median(after, 0)} cm")
    assert np.median(after) < 0.25 * np.median(before)
    assert np.median(after[:, 0]) < 5.0  # the object itself, on the frames it learnt from (3.7 cm measured)
    with pytest.raises(ValueError, match="has learned no actions"):
        trained.predict(collate([WindowDataset([data], 1, 1, depth=True)[0]]))


def test_a_policy_carrying_a_locator_acts_on_its_points_never_on_the_simulators(policy_run, locator_run, tmp_path,
                                                                              one_thread):
    run = policy_run
    plain = MDTPolicy.from_pretrained(pretrained_dir(run))
    assert not plain.data_requirements()["depth"]  # it trains on the simulator's points: no depth to read
    located = MDTPolicy.from_pretrained(pretrained_dir(run)).carrying_locator(locator_run)
    assert located.data_requirements()["depth"] and located.config.locator == str(pretrained_dir(locator_run))

    env = make_embodiment("tabletop/pick-v0", image_size=(32, 32))
    try:
        obs = env.reset(seed=10_000)
    finally:
        env.close()
    batch = observations_to_batch([obs], located.spec, located.data_requirements())
    lied = dict(batch)
    lied["observation.state"] = batch["observation.state"].clone()
    lied["observation.state"][..., located._privileged_index] += 0.3  # the simulator's points, 30 cm off

    def actions(policy, b):
        return policy.predict(b, generator=torch.Generator().manual_seed(0))

    assert torch.equal(actions(located, batch), actions(located, lied))  # it never reads them
    assert not torch.allclose(actions(plain, batch), actions(plain, lied))  # without a locator it does
    assert not torch.allclose(located.locate(batch), batch["observation.state"][:, -1, located._privileged_index])

    front = MDTPolicy.from_pretrained(pretrained_dir(run)).carrying_locator(locator_run, ("front",))
    assert front.config.locator_cameras == ("front",)
    assert not torch.equal(front.locate(batch), located.locate(batch))  # the wrist's estimate no longer joins in

    saved = located.save_pretrained(tmp_path / "located")
    reloaded = MDTPolicy.from_pretrained(saved)  # it carries the locator: no folder of the locator is read
    assert reloaded.config.locator == located.config.locator
    assert torch.equal(actions(located, batch), actions(reloaded, batch))
    reloaded.reset(obs.instruction)
    assert reloaded.act(obs).value.shape == (7,)


def test_the_command_line_gives_a_policy_its_locator(policy_run, locator_run, tmp_path, capsys, one_thread):
    from embodied.cli import main

    main(["attach-locator", "--policy", str(policy_run), "--locator", str(locator_run), "--out", str(tmp_path / "out"),
          "--cameras", "front"])
    assert capsys.readouterr().out.strip() == str(tmp_path / "out")
    policy = MDTPolicy.from_pretrained(tmp_path / "out")
    assert policy.locator is not None and policy.config.locator_cameras == ("front",)


def test_carrying_a_locator_says_what_is_wrong(recorded, locator_run, tmp_path, one_thread):
    demos, _ = recorded
    data = open_dataset(demos)
    blind = MDTPolicy.from_dataset_meta(dataclasses.replace(POLICY, hand_relative=(), hand_relative_noise=0.0),
                                        data.spec, data.stats)
    with pytest.raises(ValueError, match="does not read the goal points"):
        blind.carrying_locator(locator_run)
    policy = MDTPolicy.from_dataset_meta(POLICY, data.spec, data.stats)
    not_a_locator = policy.save_pretrained(tmp_path / "policy")
    with pytest.raises(ValueError, match="does not read"):
        MDTPolicy.from_dataset_meta(POLICY, data.spec, data.stats).carrying_locator(locator_run, ("side",))
    with pytest.raises(CheckpointError, match="is not a locator"):
        MDTPolicy.from_dataset_meta(POLICY, data.spec, data.stats).carrying_locator(not_a_locator)
    with pytest.raises(ValueError, match="after training"):
        MDTPolicy.from_dataset_meta(dataclasses.replace(POLICY, locator=str(locator_run)), data.spec, data.stats)
    with pytest.raises(ValueError, match="language_tokens=True"):
        MDTConfig(stage="locator")
    with pytest.raises(ValueError, match="hand_relative_noise"):
        MDTConfig(hand_relative_noise=-0.01)
