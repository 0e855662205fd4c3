"""Per-camera image encoder: a small GroupNorm CNN that turns one frame into one token.

MDT gives every camera its own ResNet-18 with GroupNorm (BatchNorm's batch
statistics break with the small, correlated batches of robot data) and takes
one token per camera. MDT-small keeps that shape with a 4-stage residual CNN
and reads each final feature map two ways: a spatial soft-argmax (where
things are, as 2 coordinates per channel) and a global average (what is
there), projected to one d_model token.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.nn import functional as F

from embodied.layers import FiLM


def to_float_images(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, h, w) float32 in [-1, 1], resized to `size` = (h, w)."""
    if images.dtype != torch.uint8:
        raise TypeError(f"images must be uint8 (N, H, W, 3), got {images.dtype}")
    x = images.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return x


def random_shift(x: torch.Tensor, pad: int, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift each image of (N, C, h, w) by up to `pad` pixels (edge-replicated), a DrQ-style augmentation.

    Returns the shifted images and (N, 2) how far each image's content moved, (right, down) in pixels,
    so that labels placed in the image (GOAL_UV) can move with it.
    """
    n, _, h, w = x.shape
    if pad <= 0:
        return x, torch.zeros(n, 2, device=x.device)
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None]).to(x.device)  # (N, h)
    cols = (dx[:, None] + torch.arange(w)[None]).to(x.device)  # (N, w)
    idx_n = torch.arange(n, device=x.device)[:, None, None]
    shifted = padded.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    return shifted, torch.stack([pad - dx, pad - dy], dim=1).float().to(x.device)  # output (r, c) = input (r+dy-pad, c+dx-pad)


class _Stage(nn.Module):
    """Stride-2 conv, then a residual 3x3 conv; GroupNorm + SiLU after each."""

    def __init__(self, c_in: int, c_out: int, groups: int):
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 3, 2, 1), nn.GroupNorm(groups, c_out), nn.SiLU())
        self.res = nn.Sequential(nn.Conv2d(c_out, c_out, 3, 1, 1), nn.GroupNorm(groups, c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        return F.silu(x + self.res(x))


def soft_argmax(f: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) feature maps -> (N, 2C): each channel's expected (column, row) in [-1, 1] under its softmax."""
    h, w = f.shape[2:]
    xs = torch.linspace(-1, 1, w, device=f.device, dtype=f.dtype)
    ys = torch.linspace(-1, 1, h, device=f.device, dtype=f.dtype)
    return torch.cat(_expected_coordinates(f, xs, ys), dim=-1)


def cell_centres(n: int, device=None, dtype=None) -> torch.Tensor:
    """(n,) the centres of n equal cells spanning [-1, 1] (the normalised image coordinates of GOAL_UV)."""
    return (2 * torch.arange(n, device=device, dtype=dtype) + 1) / n - 1


def _expected_coordinates(f: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C, h, w) maps, (w,) column and (h,) row coordinates -> each channel's expected (x, y) under
    its softmax over cells, two (N, C) tensors."""
    n, c, h, w = f.shape
    p = f.flatten(2).softmax(-1).view(n, c, h, w)
    return (p.sum(2) * xs).sum(-1), (p.sum(3) * ys).sum(-1)


def heatmap_points(logits: torch.Tensor) -> torch.Tensor:
    """(N, M, h, w) heat-map logits -> (N, M, 2): each map's expected (u, v) in normalised image coordinates."""
    h, w = logits.shape[2:]
    u, v = _expected_coordinates(logits, cell_centres(w, logits.device, logits.dtype),
                                 cell_centres(h, logits.device, logits.dtype))
    return torch.stack([u, v], dim=-1)


def peak_window_cells(scores: torch.Tensor, h: int, w: int, radius: int = 1) -> torch.Tensor:
    """(N, M, h·w) scores over a row-major (h, w) grid -> (N, M, (2·radius + 1)²) the flat indices of the
    window of cells around each map's highest one. At an edge the window slides inwards, so that it
    still holds the peak and no cell twice."""
    top = scores.argmax(-1)  # (N, M)
    row, col = top // w, top % w
    k = torch.arange(2 * radius + 1, device=scores.device)
    rows = (row - radius).clamp(0, max(h - 2 * radius - 1, 0))[..., None] + k  # (N, M, K)
    cols = (col - radius).clamp(0, max(w - 2 * radius - 1, 0))[..., None] + k
    return (rows[..., :, None] * w + cols[..., None, :]).flatten(-2)


def heatmap_peak_points(logits: torch.Tensor, radius: int = 1) -> torch.Tensor:
    """(N, M, h, w) heat-map logits -> (N, M, 2): each map's point at its peak, in normalised image coordinates.

    The expected point over the window of (2·radius + 1)² cells around the map's highest cell (maps of at
    least that size), weighted by the map's softmax there. Where a map is unsure between two objects, its
    expectation over every cell (`heatmap_points`) falls between them, on neither; this point stays on the
    likelier one, and still falls between cell centres where the map says so. Differentiable in the logits
    inside the window.
    """
    h, w = logits.shape[2:]
    flat = logits.flatten(2)
    cells = peak_window_cells(flat, h, w, radius)
    p = flat.gather(-1, cells).softmax(-1)
    u = cell_centres(w, logits.device, logits.dtype)[cells % w]
    v = cell_centres(h, logits.device, logits.dtype)[cells // w]
    return torch.stack([(p * u).sum(-1), (p * v).sum(-1)], dim=-1)


HEATMAP_READOUTS = {"expected": heatmap_points, "peak": heatmap_peak_points}


def with_null_cell(flat: torch.Tensor) -> torch.Tensor:
    """(..., h·w) heat-map logits -> (..., h·w + 1): one more class, "not in this image", of logit 0.

    A fixed logit loses nothing against a learned one: the map's own bias shifts every cell against it.
    The convolutional map can only say "here" cell by cell; with this class it can also say "nowhere",
    by keeping every cell below 0."""
    return torch.cat([flat, flat.new_zeros(*flat.shape[:-1], 1)], dim=-1)


def heatmap_loss(logits: torch.Tensor, uv: torch.Tensor, absent: bool = False) -> torch.Tensor | None:
    """Dense supervision of where named points are in an image (CLIPort/Transporter-style pixel labels).

    logits (N, M, h, w); uv (N, M, 2) the true points in normalised image coordinates, outside [-1, 1]
    where a point is not in view. Cross-entropy of the softmax over cells against the cell holding the
    point, plus the L1 distance of the map's expected point to it, so that the expectation can fall
    between cell centres. Points out of view are skipped, or with `absent` trained to pick the null
    cell (`with_null_cell`), so that the map learns to say when its object is not in the image instead of
    pointing anywhere untrained. None when no point is in view (and not `absent`).
    """
    h, w = logits.shape[2:]
    seen = (uv.abs() < 1).all(-1)  # (N, M)
    if not (seen.any() or absent):
        return None
    col = ((uv[..., 0] + 1) / 2 * w).long().clamp(0, w - 1)
    row = ((uv[..., 1] + 1) / 2 * h).long().clamp(0, h - 1)
    cell = row * w + col
    if absent:
        target = torch.where(seen, cell, torch.full_like(cell, h * w))
        cross_entropy = F.cross_entropy(with_null_cell(logits.flatten(2)).flatten(0, 1), target.flatten())
    else:
        cross_entropy = F.cross_entropy(logits.flatten(2)[seen], cell[seen])  # (S, h·w) against (S,)
    if not seen.any():
        return cross_entropy
    placed = (heatmap_points(logits)[seen] - uv[seen]).abs().sum(-1).mean()
    return cross_entropy + placed


def heatmap_certainty(logits: torch.Tensor, absent: bool = False) -> torch.Tensor:
    """(N, M, h, w) heat-map logits -> (N, M, 1): the probability of the map's highest cell, with `absent`
    counted against the null cell as well (then it also falls when the map says its object is not in view)."""
    flat = logits.flatten(2)
    return (with_null_cell(flat) if absent else flat).softmax(-1)[..., : flat.shape[-1]].amax(-1, keepdim=True)


def feature_map_size(image_size: tuple[int, int], stages: int) -> tuple[int, int]:
    """(h, w) of the last map of `stages` stride-2 stages (3x3, padding 1) on an image of `image_size`."""
    h, w = image_size
    for _ in range(stages):
        h, w = (h + 1) // 2, (w + 1) // 2
    return h, w


class CameraEncoder(nn.Module):
    """(N, 3, h, w) float in [-1, 1] (+ an optional (N, cond_dim) goal) -> (N, d_out) token, or with
    `spatial` (N, 1 + h'w', d_out): that token, then one per cell of the last (h', w') map.

    With `cond_dim`, every stage's channels are FiLM-modulated by the goal, so
    the features (and the soft-argmax points) can pick out what the goal names.
    `keypoint_stages` > 1 also takes soft-argmax points from earlier, finer maps:
    the last map of a 64-pixel image is 4x4, too coarse to place a small object.
    `spatial` (the last map's size, `feature_map_size`) keeps every cell as a
    token with a learned position, as ViT-style policies (Octo, RT-1) do, so a
    goal can attend to the place whose features match it instead of the CNN
    having to pool every object's position into one vector.
    `heatmaps` = M > 0 adds M goal-conditioned heat maps at the second stage's
    resolution (a 64-pixel image: 16x16), each the sum of a 1x1 projection of
    that stage and of every deeper one, upsampled (a small feature pyramid);
    their expected points join the token. Trained by `heatmap_loss` to peak
    where the goal's points are (GOAL_UV), they say where the named object is
    far more precisely than the unsupervised soft-argmax points do.
    """

    def __init__(self, widths: tuple[int, ...], groups: int, d_out: int, cond_dim: int | None = None,
                 keypoint_stages: int = 1, spatial: tuple[int, int] | None = None, heatmaps: int = 0):
        super().__init__()
        if not 1 <= keypoint_stages <= len(widths):
            raise ValueError(f"keypoint_stages={keypoint_stages} must be in 1..{len(widths)} (the CNN's stages)")
        chans = (3, *widths)
        self.stages = nn.ModuleList([_Stage(a, b, groups) for a, b in itertools.pairwise(chans)])
        self.films = nn.ModuleList([FiLM(cond_dim, c) for c in widths]) if cond_dim else None
        self.first_keypoint_stage = len(widths) - keypoint_stages
        if heatmaps and (cond_dim is None or len(widths) < 2):
            raise ValueError("heat maps need goal conditioning (cond_dim) and at least 2 stages")
        self.heat = nn.ModuleList([nn.Conv2d(c, heatmaps, 1) for c in widths[1:]]) if heatmaps else None
        self.proj = nn.Linear(2 * sum(widths[self.first_keypoint_stage:]) + widths[-1] + 2 * heatmaps, d_out)
        self.spatial = spatial
        if spatial is not None:
            self.cell_proj = nn.Linear(widths[-1], d_out)
            self.cell_pos = nn.Parameter(torch.randn(spatial[0] * spatial[1], d_out) * 0.02)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.encode(x, cond)[0]

    def encode(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(token or tokens as `forward` returns them, (N, M, h2, w2) heat-map logits or None)."""
        if (cond is None) != (self.films is None):
            raise ValueError("this camera encoder " + ("needs" if self.films is not None else "takes no")
                             + " goal conditioning (cond)")
        f, points, heat = x, [], None
        for i, stage in enumerate(self.stages):
            f = stage(f)
            if self.films is not None:
                f = self.films[i](f, cond)
            if i >= self.first_keypoint_stage:
                points.append(soft_argmax(f))
            if self.heat is not None and i >= 1:
                h = self.heat[i - 1](f)
                heat = h if heat is None else heat + F.interpolate(h, size=heat.shape[2:], mode="bilinear",
                                                                   align_corners=False)
        if heat is not None:
            points.append(heatmap_points(heat).flatten(1))
        token = self.proj(torch.cat([*points, f.mean((2, 3))], dim=-1))  # where things are, and what is there
        if self.spatial is None:
            return token, heat
        if f.shape[2:] != self.spatial:
            raise ValueError(f"the last feature map is {tuple(f.shape[2:])}, this encoder was built for {self.spatial}: "
                             "feed images of the size in the policy's config")
        cells = self.cell_proj(f.flatten(2).transpose(1, 2)) + self.cell_pos  # (N, h'w', d) row-major
        return torch.cat([token[:, None], cells], dim=1), heat


def unproject(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, intrinsics: torch.Tensor,
              extrinsics: torch.Tensor) -> torch.Tensor:
    """Pixels at depths -> world points (pinhole camera, OpenCV axes).

    x, y (N, *S) continuous pixel coordinates (pixel centres at i + 0.5), z (N, *S) metres along the
    optical axis; intrinsics (N, 3, 3) K; extrinsics (N, 4, 4) T_world_cam. Returns (N, *S, 3) metres."""
    lead = (len(z),) + (1,) * (z.dim() - 1)
    k = intrinsics.reshape(*lead, 3, 3)
    t = extrinsics.reshape(*lead, 4, 4)
    camera = torch.stack([(x - k[..., 0, 2]) / k[..., 0, 0] * z, (y - k[..., 1, 2]) / k[..., 1, 1] * z, z], dim=-1)
    return (camera[..., None, :] * t[..., :3, :3]).sum(-1) + t[..., :3, 3]  # R · camera + t


def lift_image_points(uv: torch.Tensor, depth: torch.Tensor, intrinsics: torch.Tensor,
                      extrinsics: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Points in normalised image coordinates -> points in the world, through a depth image.

    uv (N, M, 2) in [-1, 1] (`embodied.geometry.image_coordinates`' convention); depth (N, H, W) metres
    along the optical axis, 0 = no reading; intrinsics (N, 3, 3) K in pixels of that (H, W) image;
    extrinsics (N, 4, 4) T_world_cam, OpenCV axes. Returns (N, M, 3) world points (m) and (N, M) bool,
    True where a depth reading was found. Each point takes the nearest surface within one pixel of its
    own, so that a point a pixel off a small object's edge still lands on the object rather than on
    what lies behind it. The ray direction is differentiable in uv; the depth lookup is not.
    """
    n, m = uv.shape[:2]
    h, w = depth.shape[-2:]
    x = (uv[..., 0] + 1) * (w / 2)  # continuous pixel coordinates, pixel centres at i + 0.5
    y = (uv[..., 1] + 1) * (h / 2)
    col = x.detach().floor().long().clamp(0, w - 1)
    row = y.detach().floor().long().clamp(0, h - 1)
    # Read only the 3x3 pixels around each point (clamped at the border, where a repeated pixel changes no
    # minimum): min-pooling the whole image for two points per frame took a tenth of a training step.
    step = torch.arange(-1, 2, device=uv.device)
    rows = (row[..., None, None] + step[:, None]).clamp(0, h - 1)  # (N, M, 3, 1)
    cols = (col[..., None, None] + step[None, :]).clamp(0, w - 1)  # (N, M, 1, 3)
    around = depth.flatten(1).gather(1, (rows * w + cols).view(n, m * 9)).view(n, m, 9)
    z = torch.where(around > 0, around, torch.full_like(around, float("inf"))).amin(dim=-1)  # nearest surface
    found = torch.isfinite(z)
    z = torch.where(found, z, torch.zeros_like(z))
    world = unproject(x, y, z, intrinsics, extrinsics)
    return world, found
