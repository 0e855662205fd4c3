"""MDTConfig.goal_heatmaps: each camera CNN points at what the instruction names.

    embodied train mdt --policy.stage perception --policy.goal-film --policy.goal-heatmaps

The tabletop env records where the goal's object and its destination fall in
every camera image (the privileged GOAL_UV). With the option on, two
goal-conditioned heat maps per camera learn from those dense labels, as
CLIPort's and Transporter's pick and place maps do, and their expected points
join the camera token the policy reads.
"""

import dataclasses
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import pytest
import torch
from torch import nn

from embodied.collect import CollectConfig, collect
from embodied.data import open_dataset
from embodied.data.synthetic import write_located_dataset
from embodied.torch_data import WindowDataset, collate
from embodied.train import TrainConfig, train
from embodied.train_state import pretrained_dir
from embodied.types import GOAL_UV, Observation
from policies.mdt import MDTConfig, MDTPolicy
from policies.mdt.model import PointTokens
from policies.mdt.policy import rows_naming_the_object
from policies.mdt.vision import (
    CameraEncoder,
    heatmap_certainty,
    heatmap_loss,
    heatmap_peak_points,
    heatmap_points,
    random_shift,
)

TINY = MDTConfig(cnn_widths=(8, 16, 16), cnn_groups=4, d_model=32, n_heads=2, encoder_layers=1, decoder_layers=2,
                 image_size=(32, 32), mgf_image_size=(16, 16), mgf_patch=8, mgf_dim=32, cla_dim=16,
                 goal_film=True, goal_heatmaps=True, localisation_weight=1.0)


def two_squares(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n 32x32 images in [-1, 1], each with a red and a blue 4x4 square at random places; which one is
    named (0 red, 1 blue); and the named square's centre in normalised image coordinates (n, 1, 2)."""
    images = torch.full((n, 3, 32, 32), -0.5)
    corners = torch.randint(0, 28, (n, 2, 2), generator=generator)  # (image, square, (col, row))
    for i in range(n):
        for s, colour in enumerate(([1.0, -1.0, -1.0], [-1.0, -1.0, 1.0])):
            c, r = corners[i, s].tolist()
            images[i, :, r:r + 4, c:c + 4] = torch.tensor(colour)[:, None, None]
    named = torch.randint(0, 2, (n,), generator=generator)
    centre = corners[torch.arange(n), named].float() + 2.0  # pixels from the corner
    return images, named, (2 * centre / 32 - 1)[:, None]


def test_a_goal_conditioned_heat_map_learns_to_point_at_the_named_square():
    """Layouts it never saw: the expected point of the heat map lands on the named square, not the other."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    encoder = CameraEncoder((8, 16, 16), 4, 16, cond_dim=16, heatmaps=1)
    names = nn.Embedding(2, 16)
    opt = torch.optim.Adam([*encoder.parameters(), *names.parameters()], lr=3e-3)

    def error_px(images, named, uv):
        return (heatmap_points(encoder.encode(images, names(named))[1]) - uv).norm(dim=-1).squeeze(1) * 16

    test = two_squares(64, torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = error_px(*test).mean().item()
    for _ in range(250):
        images, named, uv = two_squares(32, g)
        loss = heatmap_loss(encoder.encode(images, names(named))[1], uv)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = error_px(*test)
    assert after.median().item() < 1.5 and before > 6  # pixels, on a 32-pixel image
    assert (after < 4).float().mean().item() > 0.9  # the squares are 4 pixels wide: on the named one


def test_a_random_shift_says_how_far_it_moved_each_image_so_labels_can_follow():
    images = torch.zeros(64, 1, 16, 16)
    images[:, 0, 7, 5] = 1.0  # one lit pixel at row 7, column 5
    shifted, moved = random_shift(images, 3, torch.Generator().manual_seed(0))
    assert moved.abs().max() == 3 and len(set(map(tuple, moved.tolist()))) > 10
    for image, (right, down) in zip(shifted, moved.long().tolist(), strict=True):
        assert image[0, 7 + down, 5 + right] == 1.0 and image.sum() == 1.0
    assert random_shift(images, 0)[1].abs().sum() == 0


def test_heatmap_loss_skips_points_out_of_view():
    logits = torch.zeros(2, 1, 4, 4, requires_grad=True)
    assert heatmap_loss(logits, torch.full((2, 1, 2), 2.0)) is None  # behind the camera / outside the image
    seen = heatmap_loss(logits, torch.tensor([[[0.9, -0.9]], [[2.0, 0.0]]]))  # one in view: top-right cell
    seen.backward()
    assert logits.grad[1].abs().sum() == 0 and logits.grad[0, 0, 0, 3] < 0


def test_with_heatmap_absent_a_point_out_of_view_trains_the_null_cell():
    logits = torch.zeros(2, 1, 4, 4, requires_grad=True)
    out_of_view = heatmap_loss(logits, torch.full((2, 1, 2), 2.0), absent=True)
    out_of_view.backward()
    assert out_of_view.item() == pytest.approx(np.log(17))  # 16 cells and the null cell, all alike
    assert (logits.grad > 0).all()  # every cell pushed down: "nowhere"
    logits.grad = None
    heatmap_loss(logits, torch.tensor([[[0.9, -0.9]], [[2.0, 0.0]]]), absent=True).backward()
    assert logits.grad[0, 0, 0, 3] < 0 and (logits.grad[1] > 0).all()  # one in view (top right), one not

    flat_low = torch.full((1, 1, 4, 4), -8.0)  # a map that says "nowhere"
    assert heatmap_certainty(flat_low, absent=True).item() < 0.01
    assert heatmap_certainty(flat_low).item() == pytest.approx(1 / 16)  # without the null cell: just flat


def test_a_heat_map_with_a_null_cell_learns_to_say_when_the_named_square_is_not_in_the_image():
    """Half the images lack the named square (the other square is still there). Trained with
    heatmap_absent, the map's certainty tells the two apart on layouts it never saw, and where the square
    is there, it still points at it."""
    torch.manual_seed(0)
    encoder = CameraEncoder((8, 16, 16), 4, 16, cond_dim=16, heatmaps=1)
    names = nn.Embedding(2, 16)
    opt = torch.optim.Adam([*encoder.parameters(), *names.parameters()], lr=3e-3)

    def half_missing(n, generator):
        images, named, uv = two_squares(n, generator)
        gone = torch.rand(n, generator=generator) < 0.5
        for i in gone.nonzero().flatten().tolist():  # paint the named square over with the background
            c, r = ((uv[i, 0] + 1) * 16 - 2).round().long().tolist()
            images[i, :, r:r + 4, c:c + 4] = -0.5
        return images, named, torch.where(gone[:, None, None], torch.full_like(uv, 2.0), uv), gone

    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        images, named, uv, _ = half_missing(32, g)
        loss = heatmap_loss(encoder.encode(images, names(named))[1], uv, absent=True)
        opt.zero_grad()
        loss.backward()
        opt.step()
    images, named, uv, gone = half_missing(128, torch.Generator().manual_seed(1))
    with torch.no_grad():
        maps = encoder.encode(images, names(named))[1]
    sure = heatmap_certainty(maps, absent=True)[:, 0, 0]
    assert sure[gone].max() < sure[~gone].median() and sure[gone].median() < 0.1 < sure[~gone].median()
    error_px = (heatmap_points(maps)[~gone] - uv[~gone]).norm(dim=-1) * 16
    assert error_px.median() < 2.0


def test_a_peak_readout_stays_on_one_object_where_the_map_hesitates_between_two():
    cells = (2 * torch.arange(16) + 1) / 16 - 1  # cell centres, normalised
    logits = torch.full((3, 1, 16, 16), -10.0)
    logits[0, 0, 2, 3], logits[0, 0, 12, 11] = 5.0, 4.8  # two objects; the map slightly prefers the first
    logits[1, 0, 6, 8] = logits[1, 0, 6, 9] = 5.0  # one object between two cells
    logits[2, 0, 0, 15] = 5.0  # at the image's corner
    expected, peak = heatmap_points(logits)[:, 0], heatmap_peak_points(logits)[:, 0]
    assert torch.allclose(peak[0], torch.stack([cells[3], cells[2]]), atol=1e-3)  # on the likelier object
    assert expected[0, 0] > cells[6]  # the full expectation falls far between them, on neither
    assert torch.allclose(peak[1], torch.stack([(cells[8] + cells[9]) / 2, cells[6]]), atol=1e-3)
    assert torch.allclose(peak[2], torch.stack([cells[15], cells[0]]), atol=1e-3)
    with pytest.raises(ValueError, match="point_readout='mode'"):
        dataclasses.replace(TINY, point_readout="mode")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Two real tabletop datasets at 32 px: 2 pick demonstrations and 6 rendered pick scenes."""
    root = tmp_path_factory.mktemp("heat")
    demos = CollectConfig(tasks=("tabletop/pick-v0",), episodes_per_task=2, image_size=32, workers=1, seed=0,
                          out=root / "demos")
    collect(demos, progress=False)
    collect(dataclasses.replace(demos, episodes_per_task=6, seed=500, scenes_only=True, out=root / "scenes"),
            progress=False)
    return root / "demos", root / "scenes"


def batch_of(dataset, policy, n=16):
    req = policy.data_requirements()
    windows = WindowDataset([dataset], req["obs_horizon"], req["action_horizon"], cameras=req["cameras"],
                            future_offset=req["future_offset"])
    return collate([windows[i] for i in np.linspace(0, len(windows) - 1, n).astype(int)])


def test_both_stages_learn_the_heat_maps_from_tabletop_data_and_the_policy_acts(scenes, tmp_path, one_thread):
    demos, rendered = scenes
    data = open_dataset(demos)
    assert GOAL_UV in data.spec.privileged
    loop = {"batch_size": 8, "lr": 3e-3, "warmup_steps": 2, "log_every": 10, "num_workers": 0, "progress": False,
            "output_dir": str(tmp_path)}
    stage = train(TrainConfig(dataset=(str(demos), str(rendered)), policy="mdt", steps=40, save_every=40,
                              name="perception", **loop),
                  dataclasses.replace(TINY, stage="perception", random_shift=2))  # labels move with the shift
    perceiving = MDTPolicy.from_pretrained(pretrained_dir(stage))
    batch = batch_of(data, perceiving)
    fresh = MDTPolicy.from_dataset_meta(dataclasses.replace(TINY, stage="perception"), data.spec, data.stats)
    assert perceiving.loss(batch)[1]["heatmap"] < fresh.loss(batch)[1]["heatmap"]
    assert perceiving.locate(batch).shape == (16, 6)  # the localisation head places goal_points, not GOAL_UV
    assert {cam: p.shape for cam, p in perceiving.point(batch).items()} == {"front": (16, 2, 2), "wrist": (16, 2, 2)}

    # point_tokens is the policy's own: a perception stage without it starts a policy with it.
    acting = train(TrainConfig(dataset=(str(demos),), policy="mdt", steps=4, save_every=4, name="policy", **loop),
                   dataclasses.replace(TINY, perception_init=str(stage), point_tokens=True))
    policy = MDTPolicy.from_pretrained(pretrained_dir(acting))
    assert policy.model.n_tokens == 1 + 2 * (1 + 2) + 1  # goal; per camera its token and 2 point tokens; state
    loss, terms = policy.loss(batch_of(data, policy))
    assert {"heatmap", "localisation", "diffusion"} <= set(terms)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.model.point_tokens.parameters())
    assert policy.point(batch)["wrist"].shape == (16, 2, 2)
    again = MDTPolicy.from_pretrained(pretrained_dir(acting))
    episode = data.episode(0)
    obs = Observation(images={c: episode.images[c][0] for c in episode.images},
                      state={k: v[0] for k, v in episode.state.items() if k not in data.spec.privileged})
    actions = []
    for p in (policy, again):
        torch.manual_seed(0)
        p.reset(episode.task)
        actions.append(p.act(obs).value)
    np.testing.assert_array_equal(*actions)  # a real robot has no GOAL_UV: acting never reads it


def test_a_policy_of_one_camera_learns_from_that_cameras_labels(scenes):
    """GOAL_UV holds every camera of the spec; a policy reading the wrist camera alone takes the wrist's."""
    data = open_dataset(scenes[0])
    wrist = MDTPolicy.from_dataset_meta(dataclasses.replace(TINY, cameras=("wrist",)), data.spec, data.stats)
    state = data.episode(0).state
    every = np.concatenate([state[k] for k in data.spec.state], axis=1)  # the flat (T, S) state
    labels = every[:, wrist._uv_index.numpy()]
    np.testing.assert_array_equal(labels, state[GOAL_UV][:, 4:8])  # front's four values, then the wrist's


def test_labels_move_with_the_augmented_image(scenes):
    """With random_shift, the pixel a shifted label names shows what the unshifted label's pixel showed."""
    data = open_dataset(scenes[0])
    policy = MDTPolicy.from_dataset_meta(dataclasses.replace(TINY, random_shift=4), data.spec, data.stats)
    batch = batch_of(data, policy, n=6)
    plain = policy._current_images(batch, augment=False)
    torch.manual_seed(0)
    shifted = policy._current_images_and_shifts(batch, augment=True)
    uv = torch.as_tensor(batch["observation.state"])[:, -1][:, policy._uv_index].view(6, 2, 2, 2)[:, :, 0]
    checked = 0
    for k, cam in enumerate(policy.cameras):
        images, moved = shifted[cam]
        for i in range(6):
            u, v = uv[i, k].tolist()
            col, row = int((u + 1) * 16), int((v + 1) * 16)
            right, down = moved[i].long().tolist()
            if 4 <= col < 28 and 4 <= row < 28:  # away from the replicated border
                assert torch.equal(images[i, :, row + down, col + right], plain[cam][i, :, row, col])
                checked += 1
    assert checked >= 6


def test_a_point_token_says_where_its_map_points_and_how_sure_it_is():
    """PointTokens: maps peaked at each of 16x16 cells give 256 distinct tokens (neighbours as far apart
    as distant cells, thanks to the Fourier features); a flat map (the object out of view) reads as unsure."""
    torch.manual_seed(0)
    tokens = PointTokens(points=2, d=32)
    rows, cols = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    logits = torch.full((256, 2, 16, 16), -4.0)
    logits[torch.arange(256), :, rows.flatten(), cols.flatten()] = 6.0
    with torch.no_grad():
        out = tokens(logits)[:, 0]  # (256, 32): the subject's token for a peak at each cell
    distance = torch.cdist(out, out) + torch.eye(256) * 1e9
    neighbours = (out.view(16, 16, 32)[:, 1:] - out.view(16, 16, 32)[:, :-1]).norm(dim=-1)  # one column apart
    assert distance.min() > 0.05 * distance[distance < 1e9].mean()
    assert neighbours.mean() > 0.5 * distance[distance < 1e9].mean()
    flat = torch.zeros(1, 2, 16, 16)
    peak = lambda m: m.flatten(2).softmax(-1).amax(-1)  # what PointTokens reads as certainty
    assert (peak(flat) < peak(logits[:1]) / 10).all()
    with torch.no_grad():
        assert not torch.allclose(tokens(flat)[0, 0], tokens(flat)[0, 1])  # which point it is, even when unsure


def test_goal_heatmaps_say_what_they_need(tmp_path):
    with pytest.raises(ValueError, match="needs goal_film=True"):
        dataclasses.replace(TINY, goal_film=False)
    with pytest.raises(ValueError, match="point_tokens=True needs goal_heatmaps=True"):
        dataclasses.replace(TINY, goal_heatmaps=False, point_tokens=True)
    with pytest.raises(ValueError, match="heatmap_absent=True needs goal_heatmaps=True"):
        dataclasses.replace(TINY, goal_heatmaps=False, heatmap_absent=True)
    synthetic = open_dataset(write_located_dataset(tmp_path / "d", num_episodes=1))  # goal_points, no goal_uv
    with pytest.raises(ValueError, match="needs the privileged state 'goal_uv'"):
        MDTPolicy.from_dataset_meta(TINY, synthetic.spec, synthetic.stats)


def test_only_rows_whose_goal_names_the_object_are_asked_where_it_is():
    # Two demonstrated samples: rows 0-1 carry their image goals, rows 2-3 their language goals. Sample 0
    # was instructed with its task, sample 1 with a language motion, which names no object: the heat-map
    # and localisation labels of row 3 could be met only by recognising the layout, so it is left out.
    batch = {"task": ["lift the red cube", "lift the blue cube"],
             "language_motion": ["move the arm down", "move the arm left"]}
    texts = ["lift the red cube", "move the arm left"]
    assert rows_naming_the_object([0, 1, 0, 1], texts, batch, n_image=2) == [0, 1, 2]
    # A motion that happens to read as the task (or a sample with no motion label) keeps its row.
    same = {"task": ["lift the red cube"], "language_motion": ["lift the red cube"]}
    assert rows_naming_the_object([0, 0], ["lift the red cube"], same, n_image=1) == [0, 1]
