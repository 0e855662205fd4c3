"""Depth in datasets, and MDT's `lift_points`: heat-map points lifted to 3-D through depth.

    embodied collect --depth ...            # every frame also keeps each camera's depth and calibration
    embodied train mdt --policy.goal-film --policy.goal-heatmaps --policy.point-tokens --policy.lift-points ...

A point token then says where its camera sees the named object relative to
the end effector, in metres of the frame the arm moves in, not only where it
falls in the image.
"""

import dataclasses
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import pytest
import torch

from embodied.batching import BatchedPolicy
from embodied.collect import CollectConfig, collect
from embodied.data import DatasetWriter, open_dataset
from embodied.data.errors import DatasetSpecError
from embodied.data.format import depth_key, extrinsics_key, intrinsics_key
from embodied.sim import make_embodiment
from embodied.torch_data import WindowDataset, collate
from embodied.train import TrainConfig, train
from embodied.train_state import pretrained_dir
from embodied.types import GOAL_UV, SpecMismatchError
from envs.tabletop.scene import BLOCK_HALF
from policies.mdt import MDTConfig, MDTPolicy
from policies.mdt.vision import lift_image_points

TINY = MDTConfig(cnn_widths=(8, 16, 16), cnn_groups=4, d_model=32, n_heads=2, encoder_layers=1, decoder_layers=2,
                 image_size=(32, 32), mgf_image_size=(16, 16), mgf_patch=8, mgf_dim=32, cla_dim=16,
                 goal_film=True, goal_heatmaps=True, point_tokens=True, lift_points=True, localisation_weight=1.0,
                 point_readout="peak",  # the heat-map tests read points the "expected" way,
                 heatmap_absent=True)  # and train their maps without the null cell


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Two pick demonstrations at 32 px recorded with depth, and the same two without."""
    root = tmp_path_factory.mktemp("depth")
    cfg = CollectConfig(tasks=("tabletop/pick-v0",), episodes_per_task=2, image_size=32, workers=1, seed=0,
                        out=root / "with", depth=True)
    collect(cfg, progress=False)
    collect(dataclasses.replace(cfg, out=root / "without", depth=False), progress=False)
    return root / "with", root / "without"


def test_a_dataset_recorded_with_depth_gives_back_each_frames_depth_and_calibration(recorded):
    with_depth, without = recorded
    data = open_dataset(with_depth)
    assert data.depth_cameras == ("front", "wrist")
    assert open_dataset(without).depth_cameras == ()
    env = make_embodiment("tabletop/pick-v0", image_size=(32, 32))
    try:
        first = env.reset(seed=0)  # the scene the first demonstration started from
    finally:
        env.close()
    episode = data.episode(0)
    for cam in ("front", "wrist"):
        assert episode.depth[cam].shape == (len(episode), 32, 32)
        np.testing.assert_allclose(episode.depth[cam][0], first.depth[cam], atol=0.0005)  # millimetres kept
        k, t = episode.cameras[cam]
        np.testing.assert_allclose(k[0], first.cameras[cam].intrinsics, atol=1e-5)
        np.testing.assert_allclose(t[0], first.cameras[cam].extrinsics, atol=1e-5)
    obs = episode.observation(3)  # a replayed frame carries them like a live one
    assert obs.depth["wrist"].shape == (32, 32) and obs.cameras["wrist"].extrinsics.shape == (4, 4)
    assert not np.allclose(episode.cameras["wrist"][1][0], episode.cameras["wrist"][1][-1])  # the wrist moved

    window = WindowDataset([data], obs_horizon=1, action_horizon=4, depth=True)[5]
    assert window[depth_key("front")].shape == (1, 32, 32) and window[depth_key("front")].dtype == np.float32
    assert window[intrinsics_key("wrist")].shape == (1, 3, 3) and window[extrinsics_key("wrist")].shape == (1, 4, 4)
    assert depth_key("front") not in WindowDataset([data], 1, 4)[5]  # only when asked for
    with pytest.raises(ValueError, match="recorded without the depth of cameras"):
        WindowDataset([open_dataset(without)], 1, 4, depth=True)


def test_a_frame_without_depth_is_refused_and_a_dataset_keeps_one_kind(recorded, tmp_path):
    with_depth, _ = recorded
    episode = open_dataset(with_depth).episode(0)
    spec = open_dataset(with_depth).spec
    frame = episode.observation(0)
    with DatasetWriter(tmp_path / "new", spec, depth=True) as writer:
        writer.start_episode(episode.task)
        bare = dataclasses.replace(frame, depth={})
        with pytest.raises(SpecMismatchError, match="lacks camera 'front'.s depth image"):
            writer.add_frame(bare, episode.actions[0])
        writer.add_frame(frame, episode.actions[0])
        writer.end_episode(True)
    assert open_dataset(tmp_path / "new").episode(0).depth["front"].shape == (1, 32, 32)  # the bad frame left nothing
    with pytest.raises(DatasetSpecError, match="holds depth"):
        DatasetWriter(tmp_path / "new", spec)


def test_lifting_the_goal_uv_through_depth_finds_the_object_in_the_world():
    """Real render: the pixel where the named block's centre falls, lifted through that camera's depth,
    lands on the block's surface facing the camera: within the cube's half-diagonal of its centre."""
    env = make_embodiment("tabletop/pick-v0", image_size=(64, 64))
    try:
        errors = []
        for seed in range(5):
            obs = env.reset(seed=seed)
            uv = obs.state[GOAL_UV].reshape(2, 2, 2)  # (camera, point, (u, v)) in spec order
            for c, cam in enumerate(env.spec.camera_names):
                if np.abs(uv[c, 0]).max() > 0.9:  # not in view (or at the image's edge)
                    continue
                world, found = lift_image_points(
                    torch.tensor(uv[c:c + 1, :1]), torch.tensor(obs.depth[cam][None]),
                    torch.tensor(obs.cameras[cam].intrinsics[None]), torch.tensor(obs.cameras[cam].extrinsics[None]))
                assert found.all()
                errors.append(np.linalg.norm(world[0, 0].numpy() - obs.state["goal_points"][:3]))
    finally:
        env.close()
    assert len(errors) >= 5
    assert max(errors) < BLOCK_HALF * 3 ** 0.5 + 0.005, errors  # 2-3.3 cm measured: the surface, not the centre


def test_a_point_takes_the_nearest_surface_within_one_pixel_even_at_the_image_border():
    """A point a pixel beside a near object lands on it; a point with no reading within a pixel is not found."""
    depth = torch.full((1, 8, 8), 2.0)
    depth[0, 3, 3] = 0.5                 # a small near object
    depth[0, 0, 7] = 0.25                # another in the top-right corner pixel
    depth[0, 6:, :2] = 0.0               # no reading in the bottom-left corner
    pixel = lambda col, row: [(col + 0.5) / 4 - 1, (row + 0.5) / 4 - 1]  # pixel centre -> [-1, 1]
    uv = torch.tensor([[pixel(4, 4), pixel(5, 5), pixel(6, 0), pixel(0, 7), pixel(0, 0)]])
    eye = torch.eye(4)[None]
    k = torch.tensor([[[4.0, 0, 4], [0, 4, 4], [0, 0, 1]]])
    world, found = lift_image_points(uv, depth, k, eye)
    assert found.tolist() == [[True, True, True, False, True]]
    assert world[0, :, 2].tolist() == [0.5, 2.0, 0.25, 0.0, 2.0]  # camera = world frame here: z is the depth
    assert torch.allclose(world[0, 0, :2], torch.tensor([0.5 * 0.5 / 4, 0.5 * 0.5 / 4]))  # ray through (4.5, 4.5)


def test_a_lifting_policy_trains_on_depth_acts_in_the_sim_and_reads_the_depth(recorded, tmp_path, one_thread,
                                                                               bench_module):
    with_depth, without = recorded
    loop = {"batch_size": 8, "lr": 3e-3, "warmup_steps": 1, "log_every": 10, "num_workers": 0, "progress": False,
            "output_dir": str(tmp_path)}
    run = train(TrainConfig(dataset=(str(with_depth),), policy="mdt", steps=3, save_every=3, name="lift", **loop),
                TINY)
    policy = MDTPolicy.from_pretrained(pretrained_dir(run))
    assert policy.data_requirements()["depth"]

    data = open_dataset(with_depth)
    req = policy.data_requirements()
    windows = WindowDataset([data], req["obs_horizon"], req["action_horizon"], depth=True)
    batch = collate([windows[i] for i in (0, 10, 20, 30)])
    torch.manual_seed(0)
    before = policy.predict(batch)
    moved = dict(batch)
    for cam in ("front", "wrist"):
        moved[depth_key(cam)] = batch[depth_key(cam)] * 0.5  # everything twice as near
    torch.manual_seed(0)
    assert not torch.allclose(before, policy.predict(moved))  # the lifted points reach the actions
    with pytest.raises(KeyError, match="recorded with depth"):
        policy.predict({k: v for k, v in batch.items() if not k.startswith("observation.depth.")})

    env = make_embodiment("tabletop/pick-v0", image_size=(32, 32))
    try:
        obs = env.reset(seed=100)
        chunks = BatchedPolicy(policy).act_batch([obs, obs])  # the runner's path: observations carry depth
        assert len(chunks) == 2 and np.isfinite(chunks[0].value).all()
        policy.reset(obs.instruction)
        assert policy.act(obs).value.shape == (7,)
    finally:
        env.close()

    heading = bench_module("heading")  # bench/heading.py: how far each camera's lifted point lands from the object
    lifted = heading.lifting_errors(str(pretrained_dir(run)), "tabletop/pick-v0", range(100, 103))
    assert set(lifted) == {"front", "wrist"} and all(len(e) == 3 and np.isfinite(e).all() for e in lifted.values())

    with pytest.raises(ValueError, match="recorded without the depth"):
        train(TrainConfig(dataset=(str(without),), policy="mdt", steps=1, name="flat", **loop), TINY)


def test_lift_points_says_what_it_needs():
    with pytest.raises(ValueError, match="lift_points=True needs point_tokens=True"):
        dataclasses.replace(TINY, point_tokens=False)
