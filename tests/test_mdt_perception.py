"""MDT in two stages: pretrain perception (no actions), then start a policy from it.

    embodied train mdt --policy.stage perception ...            # camera CNNs learn to find what is named
    embodied train mdt --policy.perception-init <that run> ...  # a policy starts from those CNNs
"""

import dataclasses

import pytest
import torch

from embodied.checkpoint import CheckpointError
from embodied.data import open_dataset
from embodied.data.synthetic import synthetic_observation, write_located_dataset
from embodied.train import TrainConfig, train
from embodied.train_state import pretrained_dir
from policies.mdt import MDTConfig, MDTPolicy

TINY = MDTConfig(cnn_widths=(8, 8), cnn_groups=4, d_model=32, n_heads=2, encoder_layers=1, decoder_layers=2,
                 image_size=(16, 16), mgf_image_size=(16, 16), mgf_patch=8, mgf_dim=32, cla_dim=16, goal_film=True)
PERCEPTION = dataclasses.replace(TINY, stage="perception")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return open_dataset(write_located_dataset(tmp_path_factory.mktemp("perception") / "d", num_episodes=2))


@pytest.fixture(scope="module")
def perception_run(data, tmp_path_factory):
    """A perception stage trained by the one training loop, as `embodied train mdt --policy.stage perception`."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("runs")
    return train(TrainConfig(dataset=(str(data.root),), policy="mdt", steps=40, batch_size=8, lr=3e-3,
                             warmup_steps=2, save_every=40, log_every=10, num_workers=0, progress=False,
                             output_dir=str(out), name="perception"), PERCEPTION)


def batch_of(data, policy):
    from embodied.torch_data import WindowDataset, collate

    req = policy.data_requirements()
    windows = WindowDataset([data], req["obs_horizon"], req["action_horizon"], cameras=req["cameras"],
                            future_offset=req["future_offset"])
    return collate([windows[i] for i in range(len(windows))])


def test_the_perception_stage_learns_where_the_named_thing_is_and_no_actions(data, perception_run):
    policy = MDTPolicy.from_pretrained(pretrained_dir(perception_run))
    assert not hasattr(policy.model, "decoder")  # only camera CNNs, language-goal MLP and a head: nothing unused
    assert policy.data_requirements()["future_offset"] is None
    batch = batch_of(data, policy)
    loss, metrics = policy.loss(batch)
    assert loss.item() == metrics["localisation"]
    assert set(metrics) == {"localisation", "loss"}
    fresh = MDTPolicy.from_dataset_meta(PERCEPTION, data.spec, data.stats)
    assert metrics["localisation"] < 0.5 * fresh.loss(batch)[1]["localisation"]
    truth = batch["observation.state"][:, -1, -1]  # goal_points, the last state entry
    placed = policy.locate(batch)[:, 0]
    assert (placed - truth).abs().mean() < 0.5 * (truth - truth.mean()).abs().mean()  # better than the mean
    with pytest.raises(ValueError, match="learned no actions.*perception-init"):
        policy.predict(batch)


def test_perception_init_starts_a_policy_from_the_pretrained_cnns_and_goal_mlp(data, perception_run):
    source = MDTPolicy.from_pretrained(pretrained_dir(perception_run))
    torch.manual_seed(0)
    scratch = MDTPolicy.from_dataset_meta(TINY, data.spec, data.stats)
    torch.manual_seed(0)
    started = MDTPolicy.from_dataset_meta(dataclasses.replace(TINY, perception_init=str(perception_run)),
                                          data.spec, data.stats)
    mine, theirs, fresh = (p.model.state_dict() for p in (started, source, scratch))
    for key, value in mine.items():
        if key.startswith(("camera_encoders.", "language_goal_mlp.")):
            assert torch.equal(value, theirs[key]) and not torch.equal(value, fresh[key]), key
        else:  # everything else is the same random start as without perception_init
            assert torch.equal(value, fresh[key]), key
    started.reset("touch the red cube")
    action = started.act(synthetic_observation(data.spec, 0))
    assert action.value.shape == (data.spec.action.dim,)


def test_a_perception_source_that_does_not_fit_is_a_clear_error(data, perception_run, tmp_path):
    with pytest.raises(CheckpointError, match=r"d_model: 32 there, 64 here"):
        MDTPolicy.from_dataset_meta(dataclasses.replace(TINY, d_model=64, perception_init=str(perception_run)),
                                    data.spec, data.stats)
    with pytest.raises(CheckpointError, match="holds no policy"):
        MDTPolicy.from_dataset_meta(dataclasses.replace(TINY, perception_init=str(tmp_path)), data.spec, data.stats)
    with pytest.raises(ValueError, match="stage='perceive' must be one of"):
        dataclasses.replace(TINY, stage="perceive")


def test_perception_lr_scale_slows_only_the_copied_parts_and_zero_freezes_them(data, perception_run, tmp_path):
    # `embodied train mdt --policy.perception-init <run> --policy.perception-lr-scale 0`: imitation trains
    # the transformer and heads while the pretrained camera CNNs and goal MLP stay as perception left them.
    source = MDTPolicy.from_pretrained(pretrained_dir(perception_run)).model.state_dict()
    started = dataclasses.replace(TINY, perception_init=str(perception_run))

    def trained(scale: float) -> dict[str, torch.Tensor]:
        run = train(TrainConfig(dataset=(str(data.root),), policy="mdt", steps=4, batch_size=8, lr=3e-3,
                                warmup_steps=1, save_every=4, log_every=4, num_workers=0, progress=False,
                                ema_decay=None, output_dir=str(tmp_path), name=f"scale{scale}"),
                          dataclasses.replace(started, perception_lr_scale=scale))
        return MDTPolicy.from_pretrained(pretrained_dir(run)).model.state_dict()

    frozen, free = trained(0.0), trained(1.0)
    copied = [k for k in frozen if k.startswith(("camera_encoders.", "language_goal_mlp."))]
    assert copied and all(torch.equal(frozen[k], source[k]) for k in copied)
    assert not all(torch.equal(free[k], source[k]) for k in copied)  # at the full lr they move

    slow = MDTPolicy.from_dataset_meta(dataclasses.replace(started, perception_lr_scale=0.1), data.spec, data.stats)
    (base, others), (scale, parts) = slow.parameter_groups()
    assert (base, scale) == (1.0, 0.1)
    assert {id(p) for p in parts} == {id(p) for m in (slow.model.camera_encoders, slow.model.language_goal_mlp)
                                      for p in m.parameters()}
    assert len(others) + len(parts) == len(list(slow.trainable_parameters()))
    with pytest.raises(ValueError, match=r"perception_lr_scale=-1.0 must be >= 0"):
        dataclasses.replace(started, perception_lr_scale=-1.0)
