"""The locator: where the named object and its destination are, in metres, from RGB-D images and the words.

A policy that reads the goal's points as offsets from the hand acts well from 50 demonstrations
per task (MDT with the simulator's exact `goal_points` and the gripper: 82% on the nine tabletop
families, docs/architecture.md), and poorly once those points are 2 cm off. A heat map's single peak
lifted through depth lands centimetres off (on the object's near surface, or on the table behind
its edge); this module reads the points by dense voting instead, as PVN3D and Hough-voting pose
estimators do:

- a small goal-conditioned CNN (FiLM by the instruction's token states) per camera reads RGB and
  depth at the camera's own resolution and outputs, per cell of CELL_STRIDE² pixels, for each of the
  GOAL_POINTS points (subject, destination), a logit per cell and a 3-D vote per cell: the offset
  from the nearest surface the cell's depth sees to the point itself;
- a cell's estimate is its surface point (back-projected through depth and calibration) plus its
  vote; the camera's estimate is the softmax-weighted mean over the cells around its peak (training
  reads the mean over every cell), and a null class ("not in this image", `vision.with_null_cell`)
  gives each camera's certainty; cameras are fused by it.

Trained (``MDTConfig.stage="locator"``) on rendered scenes and demonstration frames alike against
the simulator's `goal_points` (3-D error, cm) and `GOAL_UV` (which cell the point falls in): no
actions are needed. A trained policy given it (`MDTPolicy.carrying_locator`, `embodied attach-locator`)
carries its weights and, when it acts, reads the goal's points from it, never from the simulator.
Beyond MDT.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.nn import functional as F

from embodied.layers import FiLM
from policies.mdt.configuration import MDTConfig
from policies.mdt.model import GOAL_POINTS, build_language_goal, language_goal
from policies.mdt.vision import _Stage, peak_window_cells, unproject, with_null_cell

# A vote reaches at most this far from its cell's surface (tanh-bounded): an object's centre is within a few
# cm of what the camera sees of it. Unbounded, the votes learnt to point every cell at the layouts' mean
# position, which lowers the 3-D loss without finding anything (unseen scenes 14-17 cm off at step 750).
VOTE_REACH_M = 0.05
DEPTH_CENTRE_M = 0.8     # depth enters the CNN as (depth - this) / DEPTH_SCALE_M
DEPTH_SCALE_M = 0.5
HEAD_WIDTH = 32          # channels of the feature pyramid the logits and votes are read from
# The head reads the second stage's resolution: cells of 4x4 pixels (a 128-px image: 32x32 cells). A
# 4 cm object at 128 px spans one or two cells; the votes, not the cells, carry the precision. A head at
# the first stage's 2x2 cells trained at 13 samples/s against 20 here (one scratch run each, both beside
# other work); what it would gain was not measured.
CELL_STRIDE = 4


def surface_points(depth: torch.Tensor, intrinsics: torch.Tensor, extrinsics: torch.Tensor, cell: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The nearest surface each (cell × cell)-pixel block of a depth image sees, in the world.

    depth (N, H, W) metres along the optical axis (0 = no reading); intrinsics (N, 3, 3) K in pixels;
    extrinsics (N, 4, 4) T_world_cam, OpenCV axes. Returns (N, H/cell, W/cell, 3) world points (m), the
    block's centre pixel at its nearest reading, and (N, H/cell, W/cell) bool, True where the block has
    a reading. The nearest, so that a block on a small object's edge sees the object, not the table.
    """
    h, w = depth.shape[1:]
    if h % cell or w % cell:
        raise ValueError(f"depth images of {h}x{w} do not split into {cell}x{cell} blocks")
    far = torch.where(depth > 0, depth, torch.full_like(depth, float("inf")))
    z = -F.max_pool2d(-far[:, None], cell)[:, 0]  # (N, h', w') nearest reading per block
    found = torch.isfinite(z)
    z = torch.where(found, z, torch.zeros_like(z))
    hh, ww = z.shape[1:]
    x = (torch.arange(ww, device=depth.device, dtype=depth.dtype) + 0.5) * cell  # block centres, pixels
    y = (torch.arange(hh, device=depth.device, dtype=depth.dtype) + 0.5) * cell
    return unproject(x.expand_as(z), y[:, None].expand_as(z), z, intrinsics, extrinsics), found


def peak_window_mean(p: torch.Tensor, votes: torch.Tensor, h: int, w: int, radius: int = 1) -> torch.Tensor:
    """The votes of the (2·radius + 1)² cells around each map's most probable cell, weighted by their
    probability: p (N, M, h·w) over a (h, w) grid, votes (N, M, h·w, 3) -> (N, M, 3).

    The mean over every cell drifts towards wherever the rest of the mass lies (on an unseen scene, a
    map whose peak was on the right cell still read 9 cm off); the window stays on the peak's object.
    """
    cells = peak_window_cells(p, h, w, radius)  # (N, M, K²)
    weight = p.gather(-1, cells)
    weight = weight / weight.sum(-1, keepdim=True).clamp_min(1e-12)
    picked = votes.gather(2, cells[..., None].expand(*cells.shape, 3))  # (N, M, K², 3)
    return (weight[..., None] * picked).sum(2)


class CameraLocator(nn.Module):
    """(N, 4, H, W) RGB in [-1, 1] + normalised depth, (N, cond) goal -> (N, GOAL_POINTS, 4, H/s, W/s),
    s = CELL_STRIDE:
    per point and cell a logit and a 3-D vote (before its tanh bound, VOTE_REACH_M).

    Stride-2 residual stages, each FiLM-modulated by the goal, then a feature pyramid summed back to
    CELL_STRIDE's resolution, so every cell sees both the fine detail that tells a cube from a cylinder
    and the context of where the other named object lies.
    """

    def __init__(self, widths: tuple[int, ...], groups: int, cond_dim: int):
        super().__init__()
        chans = (4, *widths)
        self.stages = nn.ModuleList([_Stage(a, b, groups) for a, b in itertools.pairwise(chans)])
        self.films = nn.ModuleList([FiLM(cond_dim, c) for c in widths])
        self.first = CELL_STRIDE.bit_length() - 2  # the stage whose maps have CELL_STRIDE's resolution
        if not 0 <= self.first < len(widths):
            raise ValueError(f"cells of {CELL_STRIDE} px need at least {self.first + 1} stages, got {len(widths)}")
        self.lateral = nn.ModuleList([nn.Conv2d(c, HEAD_WIDTH, 1) for c in widths[self.first:]])
        self.head = nn.Sequential(nn.Conv2d(HEAD_WIDTH, HEAD_WIDTH, 3, 1, 1), nn.GroupNorm(8, HEAD_WIDTH), nn.SiLU(),
                                  nn.Conv2d(HEAD_WIDTH, 4 * GOAL_POINTS, 1))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        maps = []
        for stage, film in zip(self.stages, self.films, strict=True):
            x = film(stage(x), cond)
            maps.append(x)
        maps = maps[self.first:]
        f = self.lateral[-1](maps[-1])
        for lateral, m in zip(reversed(self.lateral[:-1]), reversed(maps[:-1]), strict=True):
            f = lateral(m) + F.interpolate(f, size=m.shape[2:], mode="bilinear", align_corners=False)
        out = self.head(f)
        return out.view(len(out), GOAL_POINTS, 4, *out.shape[2:])


class ObjectLocator(nn.Module):
    """Per-camera CameraLocators and the language-goal encoder; `locate` reads the goal's points."""

    def __init__(self, cfg: MDTConfig, cameras: tuple[str, ...]):
        super().__init__()
        if not cfg.language_tokens:
            raise ValueError("the locator reads the instruction's token states: build it with language_tokens=True "
                             "(a mean-pooled sentence cannot say which named object is the subject)")
        self.cfg, self.cameras = cfg, tuple(cameras)
        self.language_goal_mlp = build_language_goal(cfg)
        self.cameras_nets = nn.ModuleDict({c: CameraLocator(cfg.cnn_widths, cfg.cnn_groups, cfg.d_model)
                                           for c in self.cameras})

    def language_goal(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, L, language_dim) token states, (B, L) mask -> (B, d) goal."""
        return language_goal(self.language_goal_mlp, self.cfg, states, mask)

    def camera_votes(self, cam: str, images: torch.Tensor, depth: torch.Tensor, intrinsics: torch.Tensor,
                     extrinsics: torch.Tensor, goal: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One camera: images (N, 3, H, W) in [-1, 1], depth (N, H, W) m, calibration (N, 3, 3), (N, 4, 4), goal
        (N, d) -> (estimates (N, M, 3) world m, the mean over every cell; the same read around the peak
        (`peak_window_mean`), which is what `locate` answers; certainty (N, M) = 1 - P(not in view); logits
        (N, M, h·w + 1) over the CELL_STRIDE cells and the null class, cells with no depth reading at -inf)."""
        x = torch.cat([images, ((depth - DEPTH_CENTRE_M) / DEPTH_SCALE_M)[:, None]], dim=1)
        out = self.cameras_nets[cam](x, goal)  # (N, M, 4, h, w)
        cell = images.shape[-1] // out.shape[-1]
        surface, found = surface_points(depth, intrinsics, extrinsics, cell)  # (N, h, w, 3), (N, h, w)
        logits = out[:, :, 0].flatten(2).masked_fill(~found.flatten(1)[:, None], float("-inf"))
        logits = with_null_cell(logits)  # (N, M, hw + 1)
        p = logits.softmax(-1)
        cells = p[..., :-1]
        reach = VOTE_REACH_M * torch.tanh(out[:, :, 1:].flatten(3).transpose(2, 3))
        votes = surface.flatten(1, 2)[:, None] + reach  # (N, M, hw, 3)
        certainty = cells.sum(-1)
        estimate = (cells[..., None] * votes).sum(2) / certainty.clamp_min(1e-6)[..., None]
        return estimate, peak_window_mean(cells, votes, *out.shape[-2:]), certainty, logits

    def locate(self, views: dict[str, tuple[torch.Tensor, ...]], goal: torch.Tensor) -> torch.Tensor:
        """views {cam: (images, depth, intrinsics, extrinsics)} as `camera_votes` takes them, for some or all
        of the locator's cameras -> (N, M, 3) the goal's points in the world (m), the estimate of each
        camera in `views` weighted by its certainty."""
        unknown = sorted(set(views) - set(self.cameras))
        if unknown or not views:
            raise ValueError(f"the locator reads cameras {self.cameras}; got views of {sorted(views)}")
        estimates, certainties = zip(*(self.camera_votes(cam, *views[cam], goal)[1:3] for cam in self.cameras
                                       if cam in views), strict=True)
        c = torch.stack(certainties)  # (K, N, M)
        return (torch.stack(estimates) * c[..., None]).sum(0) / c.sum(0).clamp_min(1e-6)[..., None]


PLACED_WEIGHT = 0.3  # the 3-D error (cm) against the cells' cross-entropy: finding the object comes first


def locator_loss(model: ObjectLocator, views: dict[str, tuple[torch.Tensor, ...]], goal: torch.Tensor,
                 points: torch.Tensor, uv: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Per camera: cross-entropy of the cell holding each goal point (GOAL_UV), or of the null class where
    the point is out of view, plus PLACED_WEIGHT times the camera's 3-D error where it is in view (L1, cm).

    points (N, M, 3) the true goal points (m); uv (N, K, M, 2) where they fall in each of the K cameras
    (normalised image coordinates, out of view beyond ±1).
    """
    total, metrics = goal.new_zeros(()), {}
    for k, cam in enumerate(model.cameras):
        estimate, _, certainty, logits = model.camera_votes(cam, *views[cam], goal)
        cells_h, cells_w = (n // CELL_STRIDE for n in views[cam][1].shape[-2:])
        seen = (uv[:, k].abs() < 1).all(-1)  # (N, M)
        col = ((uv[:, k, :, 0] + 1) / 2 * cells_w).long().clamp(0, cells_w - 1)
        row = ((uv[:, k, :, 1] + 1) / 2 * cells_h).long().clamp(0, cells_h - 1)
        target = torch.where(seen, row * cells_w + col, torch.full_like(col, cells_h * cells_w))
        # A labelled cell with no depth reading has logit -inf; it cannot be learnt, so it is not asked for.
        learnable = torch.isfinite(logits.gather(-1, target[..., None]))[..., 0]
        ce = F.cross_entropy(logits[learnable], target[learnable]) if learnable.any() else goal.new_zeros(())
        err = ((estimate - points).abs().sum(-1) * 100)[seen]  # cm
        placed = err.mean() if len(err) else goal.new_zeros(())
        total = total + ce + PLACED_WEIGHT * placed
        metrics[f"{cam}_cells"] = ce.item()
        metrics[f"{cam}_cm"] = placed.item()
        metrics[f"{cam}_seen"] = float(certainty[seen].mean().detach()) if seen.any() else float("nan")
    metrics["loss"] = total.item()
    return total, metrics
