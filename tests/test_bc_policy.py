"""The BC baseline follows the policy <-> training-loop contract: build from dataset metadata, loss, batched
predict, act/correct, and checkpoints that refuse damage and the wrong embodiment."""

import dataclasses

import numpy as np
import pytest
import torch

from embodied.checkpoint import CheckpointError, load_policy
from embodied.data import format as fmt
from embodied.data import open_dataset
from embodied.data.synthetic import synthetic_spec, write_synthetic_dataset
from embodied.normalize import MissingStatisticError
from embodied.torch_data import WindowDataset, collate
from embodied.types import Correction, SpecMismatchError
from policies.bc.configuration import BCConfig
from policies.bc.policy import BCPolicy

# "concat" so that language changes the output from the first step (FiLM starts as the identity).
CONFIG = BCConfig(obs_horizon=2, action_horizon=4, n_action_steps=3, cnn_channels=(8, 16), feature_dim=16,
                  hidden_dim=32, language="concat", hold_steps=4)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = write_synthetic_dataset(tmp_path_factory.mktemp("bc") / "data", num_episodes=2, length=8)
    return open_dataset(root)


@pytest.fixture(scope="module")
def policy(dataset):
    torch.manual_seed(0)
    return BCPolicy.from_dataset_meta(CONFIG, dataset.spec, dataset.stats)


def batch_of(dataset, policy, n=6):
    req = policy.data_requirements()
    windows = WindowDataset([dataset], req["obs_horizon"], req["action_horizon"], cameras=req["cameras"])
    return collate([windows[i] for i in range(n)])


def test_data_requirements_and_trainable_parameters(policy, dataset):
    assert policy.data_requirements() == {"obs_horizon": 2, "action_horizon": 4, "cameras": ("front", "wrist"),
                                          "future_offset": None}
    names = {n for n, _ in policy.named_parameters()}
    assert all(n.startswith("net.") for n in names), "the frozen language model must stay out of the module tree"
    assert sum(p.numel() for p in policy.trainable_parameters()) == sum(p.numel() for p in policy.parameters())


def test_loss_is_a_differentiable_scalar_over_unpadded_actions(policy, dataset):
    batch = batch_of(dataset, policy)
    loss, terms = policy.loss(batch)
    assert loss.shape == () and loss.requires_grad and set(terms) == {"mse"}
    loss.backward()
    assert all(p.grad is not None for p in policy.trainable_parameters())
    policy.zero_grad()
    # Actions past the episode's end are padding: changing them must not change the loss.
    batch = batch_of(dataset, policy, n=8)
    padded = ~batch["action_mask"]
    assert padded.any()
    changed = dict(batch, action=torch.where(padded[..., None], batch["action"] + 5.0, batch["action"]))
    torch.manual_seed(0)
    assert torch.equal(policy.loss(changed)[0], policy.loss(batch)[0])


def test_predict_is_batched_unnormalised_and_gradient_free(policy, dataset):
    batch = batch_of(dataset, policy)
    out = policy.predict(batch)
    assert out.shape == (6, 4, 7) and out.dtype == torch.float32 and not out.requires_grad
    assert torch.is_inference(out)
    low, high = dataset.stats[fmt.ACTION]["min"], dataset.stats[fmt.ACTION]["max"]
    # min_max normalisation: an output of 0 maps to the middle of the data's range, so the scale is the data's.
    assert np.abs(out.numpy()).max() < 10 * np.abs(np.concatenate([low, high])).max()


def test_act_returns_a_chunk_and_a_correction_steers_it_for_hold_steps_ticks(policy, dataset):
    ep = dataset.episode(0)
    obs = ep.observation(0)
    policy.reset("pick up the red cube")
    first = policy.act(obs)
    assert first.is_chunk and first.value.shape == (3, 7) and first.spec == dataset.spec.action

    def predicted(text):
        policy.reset(text)
        return policy.act(obs).value

    task, motion = predicted("pick up the red cube"), predicted("move arm left")
    assert not np.allclose(task, motion), "language must change the actions"
    policy.reset("pick up the red cube")
    policy.correct(Correction("move arm left", time=0.0))
    np.testing.assert_allclose(policy.act(obs).value, motion, atol=1e-6)  # ticks 1-3 follow the correction
    np.testing.assert_allclose(policy.act(obs).value, motion, atol=1e-6)  # tick 4 still inside hold_steps=4
    np.testing.assert_allclose(policy.act(obs).value, task, atol=1e-6)    # then back to the task


def test_checkpoint_round_trip_gives_identical_actions(policy, dataset, tmp_path):
    path = policy.save_pretrained(tmp_path / "bc")
    back = load_policy(path, expect_spec=dataset.spec)
    assert isinstance(back, BCPolicy) and back.config == CONFIG
    batch = batch_of(dataset, policy)
    assert torch.equal(back.predict(batch), policy.predict(batch))
    size = (path / "model.safetensors").stat().st_size
    assert size < 2_000_000, f"model.safetensors is {size} bytes: the frozen MiniLM must not be in it"


def test_truncated_weights_are_a_clear_checkpoint_error(policy, tmp_path):
    path = policy.save_pretrained(tmp_path / "bc")
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_policy(path)


def test_loading_against_another_embodiment_is_a_spec_mismatch(policy, tmp_path):
    path = policy.save_pretrained(tmp_path / "bc")
    small_images = synthetic_spec(size=16)
    with pytest.raises(SpecMismatchError, match="camera 'front' is 16x16"):
        load_policy(path, expect_spec=small_images)
    slower = synthetic_spec(rate_hz=5.0)
    with pytest.raises(SpecMismatchError, match="control rate"):
        BCPolicy.from_pretrained(path, expect_spec=slower)


def test_the_saved_spec_lists_only_the_cameras_the_policy_reads(dataset, tmp_path):
    front_only = BCPolicy.from_dataset_meta(dataclasses.replace(CONFIG, cameras=("front",)), dataset.spec,
                                            dataset.stats)
    path = front_only.save_pretrained(tmp_path / "front")
    loaded = load_policy(path, expect_spec=synthetic_spec(cameras=("front",)))  # no wrist camera needed
    assert loaded.spec.camera_names == ("front",)


def test_a_missing_statistic_is_an_error_not_a_pass_through(dataset):
    stats = {k: dict(v) for k, v in dataset.stats.items()}
    del stats[fmt.ACTION]["max"]
    with pytest.raises(MissingStatisticError, match="action"):
        BCPolicy.from_dataset_meta(CONFIG, dataset.spec, stats)
    stats = {k: v for k, v in dataset.stats.items() if k != fmt.video_key("wrist")}
    with pytest.raises(MissingStatisticError, match="wrist"):
        BCPolicy.from_dataset_meta(CONFIG, dataset.spec, stats)


def test_bad_configs_are_refused_with_the_field_named():
    with pytest.raises(ValueError, match="n_action_steps"):
        BCConfig(action_horizon=4, n_action_steps=5)
    with pytest.raises(ValueError, match="language_motion_prob"):
        BCConfig(language_motion_prob=1.5)


def test_state_keys_choose_the_state_entries_the_policy_reads(dataset):
    torch.manual_seed(0)
    policy = BCPolicy.from_dataset_meta(dataclasses.replace(CONFIG, state_keys=("ee_pos",)), dataset.spec,
                                        dataset.stats)
    batch = batch_of(dataset, policy)
    state = batch[fmt.STATE].clone()
    state[..., fmt.state_indices(dataset.spec, ("joint_pos", "gripper"))] += 1.0
    assert torch.equal(policy.predict(batch | {fmt.STATE: state}), policy.predict(batch))
    state[..., fmt.state_indices(dataset.spec, ("ee_pos",))] += 1.0
    assert not torch.allclose(policy.predict(batch | {fmt.STATE: state}), policy.predict(batch))


@pytest.fixture(scope="module")
def tabletop_states(tmp_path_factory):
    """Two real state-only pick demonstrations: ee_pos and the privileged goal_points (object, destination)."""
    from embodied.collect import CollectConfig, collect

    root = tmp_path_factory.mktemp("pick") / "data"
    collect(CollectConfig(tasks=("tabletop/pick-v0",), episodes_per_task=2, cameras=(), workers=1, out=root),
            progress=False)
    return open_dataset(root)


def test_hand_relative_points_are_read_as_offsets_from_the_hand(tabletop_states):
    spec = tabletop_states.spec
    config = dataclasses.replace(CONFIG, cameras=(), state_keys=("gripper",), hand_relative=("goal_points",))
    torch.manual_seed(0)
    policy = BCPolicy.from_dataset_meta(config, spec, tabletop_states.stats)
    batch = batch_of(tabletop_states, policy)
    state = batch[fmt.STATE]
    hand, points = (state[..., fmt.state_indices(spec, (k,))] for k in ("ee_pos", "goal_points"))
    offsets = policy.hand_relative_offsets(state)  # (B, To, 6): object then destination, in tenths of a metre
    assert torch.allclose(offsets, (points - hand.repeat(1, 1, 2)) / 0.1)
    assert offsets.abs().max() > 0.5  # the hand starts well away from the object

    moved = state.clone()
    for key in ("ee_pos", "goal_points"):  # the hand and the object move together: the same offsets
        idx = fmt.state_indices(spec, (key,))
        moved[..., idx] += torch.tensor([0.05, -0.02, 0.01]).repeat(len(idx) // 3)
    assert torch.allclose(policy.predict(batch | {fmt.STATE: moved}), policy.predict(batch), atol=1e-5)
    moved[..., fmt.state_indices(spec, ("goal_points",))[:3]] += 0.05  # the object alone moves
    assert not torch.allclose(policy.predict(batch | {fmt.STATE: moved}), policy.predict(batch), atol=1e-3)


def test_hand_relative_entries_must_be_points_of_the_state(tabletop_states):
    for keys, message in ((("gripper",), "'gripper' has 1 values, not 3-d points"),
                          (("cup_pos",), "'cup_pos' is not in the state")):
        with pytest.raises(ValueError, match=message):
            BCPolicy.from_dataset_meta(dataclasses.replace(CONFIG, cameras=(), hand_relative=keys),
                                       tabletop_states.spec, tabletop_states.stats)
