"""MDTPolicy end to end on real datasets (embodied.data) with the real frozen MiniLM encoder.

Shows the training side (data_requirements -> windows -> loss) and the acting
side (predict, act with its queue, correct, save/load) of the contract.
"""

import dataclasses

import numpy as np
import pytest
import torch

from embodied import registry
from embodied.checkpoint import CheckpointError
from embodied.data import open_dataset
from embodied.data.format import ACTION, STATE, state_indices
from embodied.data.synthetic import (
    synthetic_observation,
    synthetic_spec,
    write_located_dataset,
    write_synthetic_dataset,
)
from embodied.normalize import MissingStatisticError
from embodied.types import Correction, SpecMismatchError
from policies.mdt import MDTConfig, MDTPolicy

TINY = MDTConfig(cnn_widths=(8, 8), cnn_groups=4, d_model=32, n_heads=2, encoder_layers=1, decoder_layers=2,
                 image_size=(16, 16), mgf_image_size=(16, 16), mgf_patch=8, mgf_dim=32, cla_dim=16)


@pytest.fixture(scope="module")
def language():
    from embodied.language import shared_encoder

    return shared_encoder()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return open_dataset(write_synthetic_dataset(tmp_path_factory.mktemp("mdt") / "ds", num_episodes=2, length=12))


def collate(windows: list[dict]) -> dict:
    """What a training loop does with the data layer's windows: stack arrays, keep strings as lists."""
    return {k: [w[k] for w in windows] if isinstance(windows[0][k], str) else torch.as_tensor(np.stack([w[k] for w in windows]))
            for k in windows[0]}


def batch_for(policy: MDTPolicy, ds, episodes=None) -> dict:
    req = policy.data_requirements()
    return collate(list(ds.windows(req["obs_horizon"], req["action_horizon"], cameras=req["cameras"],
                                   future_offset=req["future_offset"], episodes=episodes,
                                   goal_frame=req["goal_frame"])))


def make(dataset, language, **changes) -> MDTPolicy:
    torch.manual_seed(0)
    return MDTPolicy.from_dataset_meta(dataclasses.replace(TINY, **changes), dataset.spec, dataset.stats, language)


def test_registered_by_name_and_asks_for_the_windows_it_needs(dataset, language):
    assert registry.get("mdt", kind="policy").load() is MDTPolicy
    policy = make(dataset, language)
    assert policy.data_requirements() == {"obs_horizon": 1, "action_horizon": 10, "cameras": ("front", "wrist"),
                                          "future_offset": 3, "goal_frame": True, "depth": False}
    trainable = {id(p) for p in policy.trainable_parameters()}
    assert trainable == {id(p) for p in policy.model.parameters()}
    assert not any("word_embeddings" in k for k in policy.state_dict())  # the frozen MiniLM is no submodule


def test_loss_reports_every_term_and_the_switches_remove_them(dataset, language, one_thread):
    policy = make(dataset, language)
    batch = batch_for(policy, dataset)
    total, metrics = policy.loss(batch)
    assert total.ndim == 0 and total.requires_grad
    assert {"diffusion", "mgf", "cla", "loss"} <= set(metrics)
    assert metrics["loss"] == pytest.approx(metrics["diffusion"] + TINY.mgf_weight * metrics["mgf"]
                                            + TINY.cla_weight * metrics["cla"], rel=1e-5)
    total.backward()
    assert policy.model.foresight.patch_in.weight.grad is not None
    assert policy.model.alignment.logit_scale.grad is not None
    _, plain = make(dataset, language, use_mgf=False, use_cla=False).loss(batch)
    assert "mgf" not in plain and "cla" not in plain and plain["loss"] == plain["diffusion"]


def test_partially_labelled_batches_train_on_image_goals(dataset, language, one_thread):
    policy = make(dataset, language, language_fraction=0.0)
    without_goal = {k: v for k, v in batch_for(policy, dataset).items() if not k.startswith("goal.")}
    total, metrics = policy.loss(without_goal)
    assert metrics["labelled_fraction"] == 0.0 and torch.isfinite(total)
    # No language pass, and the image goal is the future frame itself: MGF and CLA have nothing honest to use.
    assert "cla" not in metrics and "mgf" not in metrics
    batch = batch_for(policy, dataset)  # with the episode's last frame as a distinct goal frame
    assert "mgf" in policy.loss(batch)[1]


def test_instructions_are_drawn_from_task_subtask_and_language_motion(dataset, language):
    batch = batch_for(make(dataset, language), dataset)
    motions = make(dataset, language, instruction_probs=(0.0, 0.0, 1.0))._choose_instructions(batch)
    assert motions == batch["language_motion"]
    assert set(motions) == {"move arm left", "move arm forward"}
    subtasks = make(dataset, language, instruction_probs=(0.0, 1.0, 0.0))._choose_instructions(batch)
    assert subtasks == batch["subtask"]
    torch.manual_seed(0)
    half = make(dataset, language, language_fraction=0.5)._choose_instructions(batch)
    assert 0 < sum(t is None for t in half) < len(half)


def test_overfits_a_tiny_dataset(dataset, language, one_thread):
    policy = make(dataset, language, random_shift=0, instruction_probs=(1.0, 0.0, 0.0), use_mgf=False,
                  use_cla=False, chunk=4, execute_steps=4, d_model=64)
    batch = batch_for(policy, dataset, episodes=[0])
    keep = [0, 3, 6, 9]  # four windows of one episode
    batch = {k: [v[i] for i in keep] if isinstance(v, list) else v[keep] for k, v in batch.items()}
    opt = torch.optim.AdamW(policy.trainable_parameters(), lr=2e-3)
    losses = []
    for _ in range(1000):
        loss, metrics = policy.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(metrics["diffusion"])
    assert np.mean(losses[:20]) > 0.5  # an untrained denoiser: about 1 in EDM units
    assert np.mean(losses[-100:]) < 0.1, f"diffusion loss only fell to {np.mean(losses[-100:]):.3f}"
    pred = policy.predict(batch, generator=torch.Generator().manual_seed(0))
    err = (policy.normalizer.normalize(ACTION, pred) - policy.normalizer.normalize(ACTION, batch[ACTION])).pow(2)
    assert err.mean(-1)[batch["action_mask"]].mean() < 0.03  # sampled chunks reproduce the demonstrations


def test_predict_is_batched_and_stays_inside_the_action_bounds(dataset, language, one_thread):
    policy = make(dataset, language)
    batch = batch_for(policy, dataset)
    actions = policy.predict(batch)
    assert actions.shape == (len(batch["task"]), 10, 7) and not actions.requires_grad
    spec = dataset.spec.action
    assert (actions >= torch.as_tensor(spec.low_array)).all() and (actions <= torch.as_tensor(spec.high_array)).all()
    by_image = {k: v for k, v in batch.items() if k != "task"} | {"goal.images.front": batch["future.images.front"]}
    assert policy.predict(by_image).shape == actions.shape
    with pytest.raises(KeyError, match="needs a goal"):
        policy.predict({k: v for k, v in batch.items() if k != "task" and not k.startswith("goal.")})


def test_checkpoint_round_trip_gives_identical_actions(dataset, language, tmp_path, one_thread):
    policy = make(dataset, language)
    policy.loss(batch_for(policy, dataset))[0].backward()
    with torch.no_grad():
        for p in policy.model.parameters():
            p.add_(0.01 * torch.randn_like(p))  # weights that differ from any fresh init
    folder = policy.save_pretrained(tmp_path / "mdt")
    assert sorted(f.name for f in folder.iterdir()) == ["embodiment_spec.json", "model.safetensors",
                                                         "normalization.safetensors", "policy.json"]
    assert folder.joinpath("model.safetensors").stat().st_size < 2e6  # no MiniLM inside
    loaded = MDTPolicy.from_pretrained(folder, expect_spec=dataset.spec, language_encoder=language)
    batch = batch_for(policy, dataset, episodes=[1])
    a = policy.predict(batch, generator=torch.Generator().manual_seed(7))
    b = loaded.predict(batch, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert not torch.equal(a, policy.predict(batch, generator=torch.Generator().manual_seed(8)))
    assert loaded.config == policy.config
    assert registry.get("mdt").load() is type(loaded)


def test_wrong_embodiment_and_damaged_checkpoints_are_clear_errors(dataset, language, tmp_path):
    folder = make(dataset, language).save_pretrained(tmp_path / "mdt")
    with pytest.raises(SpecMismatchError, match="camera 'front' is 48x48"):
        MDTPolicy.from_pretrained(folder, expect_spec=synthetic_spec(size=48), language_encoder=language)
    folder.joinpath("model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        MDTPolicy.from_pretrained(folder, language_encoder=language)


def test_missing_normalisation_statistics_are_errors(dataset, language):
    stats = dict(dataset.stats)
    with pytest.raises(MissingStatisticError, match="action"):
        MDTPolicy.from_dataset_meta(TINY, dataset.spec, {k: v for k, v in stats.items() if k != ACTION}, language)
    no_std = stats | {STATE: {k: v for k, v in stats[STATE].items() if k != "std"}}
    with pytest.raises(MissingStatisticError, match="std"):
        MDTPolicy.from_dataset_meta(TINY, dataset.spec, no_std, language)
    no_q99 = stats | {ACTION: {k: v for k, v in stats[ACTION].items() if k != "q99"}}
    with pytest.raises(MissingStatisticError, match="q99"):
        MDTPolicy.from_dataset_meta(dataclasses.replace(TINY, action_norm="bounds_q99"), dataset.spec, no_q99, language)


def test_act_keeps_a_queue_and_replans_when_it_empties(dataset, language, one_thread):
    policy = make(dataset, language, execute_steps=4)
    calls = []
    predict = policy.predict
    policy.predict = lambda batch, generator=None: calls.append(batch["task"][0]) or predict(batch)
    policy.reset("pick up the red cube")
    for t in range(9):
        action = policy.act(synthetic_observation(dataset.spec, t))
        assert action.value.shape == (7,) and action.spec == dataset.spec.action
    assert len(calls) == 3  # replans at ticks 0, 4 and 8


def test_a_correction_steers_for_a_while_then_the_task_returns(dataset, language, one_thread):
    policy = make(dataset, language, correction_hold_steps=3)
    calls = []
    predict = policy.predict
    policy.predict = lambda batch, generator=None: calls.append(batch["task"][0]) or predict(batch)
    policy.reset(None)
    obs = synthetic_observation(dataset.spec, 0)
    obs.instruction = "open the drawer"
    policy.act(obs)
    policy.correct(Correction("a bit more to the left", time=0.1, payload={"language_motion": "move arm left"}))
    assert policy.instruction == "move arm left"
    for _ in range(4):
        policy.act(obs)
    assert calls == ["open the drawer", "move arm left", "open the drawer"]
    assert policy.instruction == "open the drawer"
    policy.correct(Correction("stop moving down", time=0.5))
    policy.act(obs)
    assert calls[-1] == "stop moving down"  # no language motion in the payload: the text itself


def test_act_without_any_instruction_says_what_to_do(dataset, language):
    policy = make(dataset, language)
    policy.reset(None)
    with pytest.raises(ValueError, match="reset\\(instruction\\)"):
        policy.act(synthetic_observation(dataset.spec, 0))


def test_state_keys_choose_the_state_entries_the_policy_reads(dataset, language, one_thread):
    # Meta-World's protocol gives a policy the hand position and gripper, not the simulator's object poses.
    policy = make(dataset, language, state_keys=("ee_pos", "gripper"))
    assert policy.model.state_in.in_features == 4
    with torch.no_grad():  # the AdaLN-Zero layers start at zero: give every input a path to the actions
        for block in policy.model.decoder:
            block.ada[1].weight.normal_(0, 0.1)
        policy.model.final_ada[1].weight.normal_(0, 0.1)
        policy.model.action_out.weight.normal_(0, 0.1)
    batch = batch_for(policy, dataset)
    before = policy.predict(batch, generator=torch.Generator().manual_seed(0))

    def with_bumped(key: str) -> torch.Tensor:
        state = batch[STATE].clone()
        state[..., state_indices(dataset.spec, (key,))] += 1.0
        return policy.predict(batch | {STATE: state}, generator=torch.Generator().manual_seed(0))

    assert torch.equal(with_bumped("joint_pos"), before)
    assert not torch.allclose(with_bumped("ee_pos"), before)
    with pytest.raises(KeyError, match=r"'object_pose'\] are not in .* it has \['joint_pos'"):
        make(dataset, language, state_keys=("object_pose",))


def test_hand_relative_points_reach_the_state_token_as_offsets_from_the_hand(tmp_path, language, one_thread):
    # With exact object positions read this way and only the gripper besides, the policy sees where things
    # are from the hand, as its ee_delta actions move it: the diagnostic of docs/architecture.md.
    from embodied.collect import CollectConfig, collect

    collect(CollectConfig(tasks=("tabletop/pick-v0",), episodes_per_task=1, cameras=("front",), image_size=32,
                          workers=1, out=tmp_path / "pick"), progress=False)
    data = open_dataset(tmp_path / "pick")
    policy = make(data, language, state_keys=("gripper",), hand_relative=("goal_points",))
    assert policy.model.state_in.in_features == 1 + 6  # the gripper, then the object and its destination
    with torch.no_grad():  # the AdaLN-Zero layers start at zero: give every input a path to the actions
        for block in policy.model.decoder:
            block.ada[1].weight.normal_(0, 0.1)
        policy.model.final_ada[1].weight.normal_(0, 0.1)
        policy.model.action_out.weight.normal_(0, 0.1)
    batch = batch_for(policy, data, episodes=[0])

    def act(state: torch.Tensor) -> torch.Tensor:
        return policy.predict(batch | {STATE: state}, generator=torch.Generator().manual_seed(0))

    moved = batch[STATE].clone()
    for key in ("ee_pos", "goal_points"):  # the hand and the object move together: the same offsets
        idx = state_indices(data.spec, (key,))
        moved[..., idx] += torch.tensor([0.05, -0.02, 0.01]).repeat(len(idx) // 3)
    assert torch.allclose(act(moved), act(batch[STATE]), atol=1e-5)
    moved[..., state_indices(data.spec, ("goal_points",))[:3]] += 0.05  # the object alone moves
    assert not torch.allclose(act(moved), act(batch[STATE]), atol=1e-3)
    with pytest.raises(ValueError, match="MDTConfig.hand_relative: 'gripper' has 1 values, not 3-d points"):
        make(data, language, hand_relative=("gripper",))


def test_goal_film_makes_the_camera_tokens_depend_on_the_goal(dataset, language, tmp_path, one_thread):
    policy = make(dataset, language, goal_film=True)
    batch = batch_for(policy, dataset)
    total, _ = policy.loss(batch)
    total.backward()
    film = policy.model.camera_encoders["front"].films[0].proj
    assert film.weight.grad is not None and film.weight.grad.abs().sum() > 0  # the goal gets a say in what is seen
    with torch.no_grad():
        for encoder in policy.model.camera_encoders.values():
            for layer in encoder.films:
                layer.proj.weight.normal_(0, 0.1)  # a trained FiLM, not its identity start
    images = {cam: policy._images(batch[f"observation.images.{cam}"][:1], TINY.image_size, augment=False)
              for cam in policy.cameras}
    state = torch.zeros(1, 1, policy.model.state_in.in_features)
    drawer, cube = policy._language_goals(["open the drawer", "lift the red cube"])[:, None].unbind(0)
    tokens = [policy.model.observation_tokens(images, state, goal) for goal in (drawer, cube)]
    assert not torch.allclose(tokens[0][:, :2], tokens[1][:, :2])  # camera tokens (front, wrist) differ
    assert torch.equal(tokens[0][:, 2], tokens[1][:, 2])  # the state token does not
    loaded = MDTPolicy.from_pretrained(policy.save_pretrained(tmp_path / "film"), expect_spec=dataset.spec,
                                       language_encoder=language)
    a = policy.predict(batch, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, loaded.predict(batch, generator=torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match="needs goal conditioning"):
        policy.model.camera_encoders["front"](images["front"].flatten(0, 1))
    with pytest.raises(ValueError, match="takes no goal conditioning"):
        make(dataset, language).model.camera_encoders["front"](images["front"].flatten(0, 1), drawer)


def test_localisation_loss_learns_the_privileged_state_from_the_images(tmp_path, language, one_thread):
    """localisation_weight > 0: the encoder output must predict the spec's privileged state (here a value that
    the synthetic images show, as a sim's object position shows in its frames), and its gradient reaches the
    camera CNNs. Without privileged state in the spec the option is a clear error."""
    data = open_dataset(write_located_dataset(tmp_path / "d", num_episodes=2))
    torch.manual_seed(0)
    policy = MDTPolicy.from_dataset_meta(dataclasses.replace(TINY, localisation_weight=1.0, use_state=False),
                                         data.spec, data.stats, language)
    batch = batch_for(policy, data)
    total, metrics = policy.loss(batch)
    assert metrics["loss"] == pytest.approx(metrics["diffusion"] + TINY.mgf_weight * metrics["mgf"]
                                            + TINY.cla_weight * metrics["cla"] + metrics["localisation"], rel=1e-5)
    total.backward()
    assert policy.model.camera_encoders["front"].stages[0].down[0].weight.grad.abs().sum() > 0
    first = metrics["localisation"]
    opt = torch.optim.AdamW(policy.trainable_parameters(), lr=3e-3)
    for _ in range(60):
        opt.zero_grad()
        policy.loss(batch)[0].backward()
        opt.step()
    assert policy.loss(batch)[1]["localisation"] < 0.2 * first
    assert "localisation" not in make(data, language).loss(batch)[1]  # off by default: MDT as published
    plain = open_dataset(write_synthetic_dataset(tmp_path / "plain", 1, 12))
    with pytest.raises(ValueError, match="localisation_weight=1.0 needs privileged state"):
        make(plain, language, localisation_weight=1.0)


def test_scene_samples_train_perception_and_never_the_actions(tmp_path, language, one_thread):
    """Samples whose action_mask is all False (a scene dataset's windows) get no image-goal row and no
    denoising loss: changing their actions changes nothing, while the localisation loss still reads them.
    A batch of scenes alone trains perception only."""
    data = open_dataset(write_located_dataset(tmp_path / "d", num_episodes=1))
    policy = MDTPolicy.from_dataset_meta(dataclasses.replace(TINY, localisation_weight=1.0), data.spec, data.stats,
                                         language)
    batch = batch_for(policy, data)
    scenes = torch.arange(12) >= 6
    batch["action_mask"][scenes] = False

    def loss_of(b):
        torch.manual_seed(1)
        return policy.loss(b)[1]

    metrics = loss_of(batch)
    moved = dict(batch, action=batch["action"].clone())
    moved["action"][scenes] += 5.0
    assert loss_of(moved)["diffusion"] == metrics["diffusion"]
    moved_state = dict(batch, **{STATE: batch[STATE].clone()})
    moved_state[STATE][scenes, :, -1] += 3.0  # where the goal is, in the scene samples only
    assert loss_of(moved_state)["localisation"] != metrics["localisation"]
    assert metrics["labelled_fraction"] == 1.0  # of the demonstrated samples; scenes always keep their task
    batch["action_mask"][:] = False
    only_scenes = loss_of(batch)
    assert "diffusion" not in only_scenes and "cla" not in only_scenes
    assert only_scenes["loss"] == pytest.approx(TINY.mgf_weight * only_scenes["mgf"] + only_scenes["localisation"],
                                                rel=1e-5)
