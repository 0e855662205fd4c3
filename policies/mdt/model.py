"""MDT networks: goal-conditioned encoder, AdaLN-Zero action decoder, MGF and CLA heads.

Token layout (B = batch, To = obs_horizon, K = cameras, d = d_model):

    encoder input  [goal | cam_1..K at frame 1 | state 1 | ... | cam_1..K at frame To | state To]
                   (B, 1 + To (K + 1), d) without state tokens when use_state is off;
                   with spatial_tokens each cam is 1 + h'w' tokens (its pooled token, then
                   one per cell of its last h' x w' feature map)
    decoder input  noisy action tokens (B, chunk, d), cross-attending to the encoder output

Attention structure is declared as data (`AttentionRule`) and turned into
boolean masks (True = may attend) that are checked at construction: every
encoder token sees every encoder token (non-causal), action token i sees
action tokens 0..i (causal) and every encoder token.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
import weakref

import torch
from torch import nn
from torch.nn import functional as F

from embodied.language import MAX_TOKENS
from policies.mdt.configuration import MDTConfig
from policies.mdt.vision import HEATMAP_READOUTS, CameraEncoder, feature_map_size, heatmap_certainty, lift_image_points

# ---------------------------------------------------------------------------------- attention


@dataclasses.dataclass(frozen=True)
class AttentionRule:
    """Which query positions may attend to which key positions: "all" or "causal" (key index <= query index)."""

    kind: str

    def mask(self, n_query: int, n_key: int) -> torch.Tensor:
        """(n_query, n_key) bool, True where attention is allowed."""
        if self.kind == "all":
            return torch.ones(n_query, n_key, dtype=torch.bool)
        if self.kind == "causal":
            return torch.ones(n_query, n_key, dtype=torch.bool).tril()
        raise ValueError(f"unknown attention rule {self.kind!r}; use 'all' or 'causal'")


ENCODER_SELF = AttentionRule("all")
DECODER_SELF = AttentionRule("causal")
DECODER_CROSS = AttentionRule("all")


class Attention(nn.Module):
    """Multi-head attention of queries (B, Nq, d) over keys/values (B, Nk, d) under a fixed bool mask."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, d)

    def keys_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, Nk, d) -> keys and values (B, heads, Nk, d/heads) each; cacheable while the context is fixed."""
        b, _, d = context.shape
        k, v = self.kv(context).view(b, -1, 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return k, v

    def forward(self, x: torch.Tensor, context: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
                mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, Nq, d); context (B, Nk, d) or its cached `keys_values` -> (B, Nq, d)."""
        b, nq, d = x.shape
        q = self.q(x).view(b, nq, self.heads, d // self.heads).transpose(1, 2)
        k, v = self.keys_values(context) if isinstance(context, torch.Tensor) else context
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, nq, d))


def _mlp(d: int, ratio: float, dropout: float) -> nn.Sequential:
    hidden = int(d * ratio)
    return nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d))


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: self-attention under `mask`, then an MLP."""

    def __init__(self, d: int, heads: int, ratio: float, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = Attention(d, heads, dropout)
        self.mlp = _mlp(d, ratio, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, mask)
        return x + self.mlp(self.norm2(x))


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class DecoderBlock(nn.Module):
    """AdaLN-Zero block: causal self-attention, cross-attention to the encoder, MLP.

    Each of the three sub-layers gets a shift, scale and gate computed from
    the noise-level embedding c (B, d); the projection producing them starts
    at zero, so every block starts as the identity (DiT's AdaLN-Zero).
    """

    def __init__(self, d: int, heads: int, ratio: float, dropout: float):
        super().__init__()
        self.norms = nn.ModuleList([nn.LayerNorm(d, elementwise_affine=False) for _ in range(3)])
        self.self_attn = Attention(d, heads, dropout)
        self.cross_attn = Attention(d, heads, dropout)
        self.mlp = _mlp(d, ratio, dropout)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(d, 9 * d))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: torch.Tensor, context: tuple[torch.Tensor, torch.Tensor], c: torch.Tensor,
                self_mask: torch.Tensor, cross_mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, chunk, d); context: this block's cross-attention keys/values; c (B, d) noise embedding."""
        m = self.ada(c).chunk(9, dim=-1)
        h = _modulate(self.norms[0](x), m[0], m[1])
        x = x + m[2][:, None] * self.self_attn(h, h, self_mask)
        h = _modulate(self.norms[1](x), m[3], m[4])
        x = x + m[5][:, None] * self.cross_attn(h, context, cross_mask)
        h = _modulate(self.norms[2](x), m[6], m[7])
        return x + m[8][:, None] * self.mlp(h)


# c_noise = ln(σ)/4 spans only about [-1.7, 1.1]; at this scale the fastest feature turns ~30 rad across it, so
# nearby noise levels get nearby embeddings (a DiT-like x1000 would make the fast features look random in σ).
SIGMA_FREQ_SCALE = 10.0


def sinusoidal(x: torch.Tensor, dim: int) -> torch.Tensor:
    """(B,) scalars -> (B, dim) sin/cos features over log-spaced frequencies."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=x.device, dtype=torch.float32) / half)
    args = x.float()[:, None] * freqs[None] * SIGMA_FREQ_SCALE
    return torch.cat([args.sin(), args.cos()], dim=-1)


# ---------------------------------------------------------------------------------- MGF and CLA


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, h, w) -> (B, (h/p)(w/p), p·p·C) patches in row-major order."""
    b, c, h, w = images.shape
    x = images.view(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


class MaskedForesight(nn.Module):
    """MGF: reconstruct the masked patches of the future frames from the encoder tokens.

    Per sample and camera a random `mask_ratio` share of the future frame's
    patches is hidden; visible patches enter as linear embeddings, hidden ones
    as a learned mask token, all with position and camera embeddings. A small
    non-causal transformer reads [encoder tokens | patch tokens] and predicts
    pixels; the loss is the MSE on hidden patches only, so the encoder tokens
    must carry what the scene will look like `future_offset` ticks ahead.
    """

    def __init__(self, cfg: MDTConfig, n_cameras: int):
        super().__init__()
        h, w = cfg.mgf_image_size
        self.patch, self.ratio, self.size = cfg.mgf_patch, cfg.mgf_mask_ratio, (h, w)
        self.n_patches = n_cameras * (h // self.patch) * (w // self.patch)
        pdim = 3 * self.patch**2
        self.context_in = nn.Linear(cfg.d_model, cfg.mgf_dim)
        self.patch_in = nn.Linear(pdim, cfg.mgf_dim)
        self.mask_token = nn.Parameter(torch.zeros(cfg.mgf_dim))
        self.pos = nn.Parameter(torch.randn(self.n_patches, cfg.mgf_dim) * 0.02)
        heads = max(1, cfg.mgf_dim // 32)
        self.blocks = nn.ModuleList([EncoderBlock(cfg.mgf_dim, heads, cfg.mlp_ratio, 0.0) for _ in range(cfg.mgf_layers)])
        self.norm = nn.LayerNorm(cfg.mgf_dim)
        self.head = nn.Linear(cfg.mgf_dim, pdim)

    def loss(self, context: torch.Tensor, future: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """context (B, N, d); future (B, K, 3, h, w) in [-1, 1] at mgf_image_size -> scalar MSE."""
        b = future.shape[0]
        target = patchify(future.flatten(0, 1), self.patch).view(b, self.n_patches, -1)  # cameras side by side
        hidden = torch.rand(b, self.n_patches, generator=generator).argsort(-1) < round(self.ratio * self.n_patches)
        hidden = hidden.to(future.device)
        tokens = torch.where(hidden[..., None], self.mask_token, self.patch_in(target)) + self.pos
        x = torch.cat([self.context_in(context), tokens], dim=1)
        for block in self.blocks:
            x = block(x, None)
        pred = self.head(self.norm(x[:, context.shape[1]:]))
        return (pred - target).pow(2).mean(-1)[hidden].mean()


class LatentAlignment(nn.Module):
    """CLA: symmetric InfoNCE between the encoder outputs under the language goal and under the image goal.

    Each encoder output (B, N, d) is pooled by multi-head attention from one
    learned query (MDT's "map" projection), projected and L2-normalised; the
    temperature is learned (CLIP's logit scale, initialised to 1 / 0.07).
    """

    def __init__(self, cfg: MDTConfig):
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, cfg.d_model) * 0.02)
        self.pool = Attention(cfg.d_model, cfg.n_heads, 0.0)
        self.proj = nn.Sequential(nn.LayerNorm(cfg.d_model), nn.Linear(cfg.d_model, cfg.cla_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / cfg.cla_init_temperature)))

    def embed(self, context: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(self.query.expand(len(context), -1, -1), context, None)[:, 0]
        return F.normalize(self.proj(pooled), dim=-1)

    def loss(self, context_language: torch.Tensor, context_image: torch.Tensor) -> torch.Tensor:
        a, b = self.embed(context_language), self.embed(context_image)
        logits = self.logit_scale.clamp(max=math.log(100.0)).exp() * a @ b.T  # (L, L)
        labels = torch.arange(len(a), device=a.device)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


# ---------------------------------------------------------------------------------- MDT


# Heat maps per camera with goal_heatmaps: the goal's subject and its destination, as in GOAL_UV.
GOAL_POINTS = 2
LIFT_RANGE_M = 0.5  # lifted offsets are read as offset / this: a tabletop reach is within about ±1


def build_camera_encoders(cfg: MDTConfig, cameras: tuple[str, ...]) -> nn.ModuleDict:
    """One CameraEncoder per camera, FiLM-conditioned on the goal token with `goal_film`."""
    cells = feature_map_size(cfg.image_size, len(cfg.cnn_widths)) if cfg.spatial_tokens else None
    film = cfg.d_model if cfg.goal_film else None
    return nn.ModuleDict({c: CameraEncoder(cfg.cnn_widths, cfg.cnn_groups, cfg.d_model, film, cfg.keypoint_stages,
                                           cells, GOAL_POINTS if cfg.goal_heatmaps else 0) for c in cameras})


class PointTokens(nn.Module):
    """One camera's goal heat maps -> one token per map: where it points and how sure it is.

    (N, M, h, w) logits -> (N, M, d). Each token reads the map's point (u, v) in [-1, 1], as `readout`
    (a key of vision.HEATMAP_READOUTS) takes it, through Fourier features (octaves 1..2^(bands-1), so
    that a pixel's difference is visible to a linear layer) and its peak probability
    (`vision.heatmap_certainty`: low where the map is flat; with `absent`, maps trained with a null cell,
    also where the map says its object is out of view), plus a learned embedding of which point it is
    (the goal's subject or its destination).

    With `lifted`, a token also reads the point lifted to 3-D (`vision.lift_image_points`) as an
    offset from the end effector, (N, M, 3) metres in the world frame, through Fourier features of
    offset / LIFT_RANGE_M (periods down to about 3 cm), and whether a depth reading was found.
    """

    def __init__(self, points: int, d: int, bands: int = 6, lifted: bool = False, readout: str = "expected",
                 absent: bool = False):
        super().__init__()
        self.readout, self.absent = HEATMAP_READOUTS[readout], absent
        self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(bands), persistent=False)
        self.lifted = lifted
        width = 2 + 4 * bands + 1 + ((3 + 6 * bands + 1) if lifted else 0)
        self.mlp = nn.Sequential(nn.Linear(width, d), nn.GELU(), nn.Linear(d, d))
        self.which = nn.Parameter(torch.randn(points, d) * 0.02)

    def forward(self, logits: torch.Tensor, offsets: torch.Tensor | None = None,
                found: torch.Tensor | None = None, uv: torch.Tensor | None = None) -> torch.Tensor:
        """logits (N, M, h, w); with `lifted`, offsets (N, M, 3) metres and found (N, M) bool -> (N, M, d).
        uv: the maps' points as `self.readout` gives them, where the caller has already read them (lifting)."""
        if self.lifted != (offsets is not None and found is not None):
            raise ValueError("a PointTokens built with lifted=True takes offsets and found, and one without takes "
                             "neither")
        uv = self.readout(logits) if uv is None else uv  # (N, M, 2)
        peak = heatmap_certainty(logits, self.absent)  # (N, M, 1)
        features = [uv, *self._fourier(uv), peak]
        if offsets is not None:
            seen = found[..., None].to(offsets.dtype)
            s = offsets / LIFT_RANGE_M * seen  # no reading: zeros, told apart by the flag
            features += [s, *self._fourier(s), seen]
        return self.mlp(torch.cat(features, dim=-1)) + self.which

    def _fourier(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        angles = (x[..., None] * self.freqs).flatten(-2)  # (..., dims·bands)
        return angles.sin(), angles.cos()


class LanguageTokenGoal(nn.Module):
    """(B, L, language_dim) frozen token states + (B, L) bool mask (True = real token) -> (B, d) goal token.

    One self-attention block over the words (with learned positions), then one learned query attends
    to them. Mean pooling blurs which word plays which role ("stack the red block on the blue block"
    and its reverse pool to cosine 0.997); attending keeps "the first colour named is the one to move".
    Beyond MDT, whose goal is CLIP's pooled sentence vector.
    """

    def __init__(self, cfg: MDTConfig):
        super().__init__()
        d = cfg.d_model
        self.inp = nn.Linear(cfg.language_dim, d)
        self.pos = nn.Parameter(torch.randn(MAX_TOKENS, d) * 0.02)
        self.block = EncoderBlock(d, cfg.n_heads, cfg.mlp_ratio, cfg.dropout)
        self.query = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.pool = Attention(d, cfg.n_heads, cfg.dropout)
        self.out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, _ = states.shape
        if n > MAX_TOKENS:
            raise ValueError(f"{n} language tokens; at most {MAX_TOKENS} (the encoder truncates to that)")
        keys = mask[:, None, None, :]  # (B, 1, 1, L): every head and query sees only the real tokens
        h = self.block(self.inp(states) + self.pos[:n], keys)
        return self.out(self.pool(self.query.expand(b, -1, -1), h, keys)[:, 0])


def build_language_goal(cfg: MDTConfig) -> nn.Module:
    """The language goal's encoder: with `language_tokens` a LanguageTokenGoal over the token states,
    else an MLP of the (B, language_dim) sentence vector -> (B, d_model) goal token."""
    if cfg.language_tokens:
        return LanguageTokenGoal(cfg)
    return nn.Sequential(nn.Linear(cfg.language_dim, cfg.d_model), nn.GELU(), nn.Linear(cfg.d_model, cfg.d_model))


def language_goal(module: nn.Module, cfg: MDTConfig, embedding: torch.Tensor,
                  mask: torch.Tensor | None) -> torch.Tensor:
    """Run `build_language_goal`'s module: embedding (B, language_dim), or with `language_tokens` token
    states (B, L, language_dim) and their mask (B, L) -> (B, d) goal tokens."""
    if cfg.language_tokens != (mask is not None):
        raise ValueError("language_tokens=True takes token states and their mask (SentenceEncoder."
                         "encode_tokens); language_tokens=False takes sentence vectors and no mask")
    return module(embedding, mask) if mask is not None else module(embedding)


@dataclasses.dataclass
class PointGeometry:
    """What lifting heat-map points to 3-D needs, per frame: B samples × To frames.

    depth {cam: (B, To, H, W) metres}; intrinsics {cam: (B, To, 3, 3)}; extrinsics {cam: (B, To, 4, 4)
    T_world_cam}; shift {cam: (B, To, 2)} how far augmentation moved each image's content (right, down;
    pixels of the network's input); ee_pos (B, To, 3) metres, world frame.
    """

    depth: dict[str, torch.Tensor]
    intrinsics: dict[str, torch.Tensor]
    extrinsics: dict[str, torch.Tensor]
    shift: dict[str, torch.Tensor]
    ee_pos: torch.Tensor

    def offsets(self, cam: str, uv: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """uv (B·To, M, 2) points in camera `cam`'s (shifted) network input of `size` = (h, w) -> (B·To, M, 3)
        offsets of their lifted points from the end effector (m) and (B·To, M) whether depth was found."""
        h, w = size
        shift = self.shift[cam].flatten(0, 1).to(uv)  # the image moved; the depth image did not
        original = uv - torch.stack([2 * shift[:, 0] / w, 2 * shift[:, 1] / h], dim=-1)[:, None]
        world, found = lift_image_points(original, self.depth[cam].flatten(0, 1).to(uv),
                                         self.intrinsics[cam].flatten(0, 1).to(uv),
                                         self.extrinsics[cam].flatten(0, 1).to(uv))
        return world - self.ee_pos.flatten(0, 1).to(uv)[:, None], found


class MDTModel(nn.Module):
    """All trainable MDT parts. The policy feeds it preprocessed tensors (see policy.py)."""

    def __init__(self, cfg: MDTConfig, cameras: tuple[str, ...], state_dim: int, action_dim: int,
                 privileged_dim: int = 0):
        super().__init__()
        self.cfg, self.cameras, self.action_dim = cfg, tuple(cameras), action_dim
        d = cfg.d_model
        cells = feature_map_size(cfg.image_size, len(cfg.cnn_widths)) if cfg.spatial_tokens else None
        self.camera_encoders = build_camera_encoders(cfg, cameras)
        self.point_tokens = (nn.ModuleDict({c: PointTokens(GOAL_POINTS, d, lifted=cfg.lift_points,
                                                                  readout=cfg.point_readout,
                                                                  absent=cfg.heatmap_absent)
                                            for c in cameras})
                             if cfg.point_tokens else None)
        per_camera = 1 + (cells[0] * cells[1] if cells else 0) + (GOAL_POINTS if cfg.point_tokens else 0)
        self.goal_image_encoder = CameraEncoder(cfg.cnn_widths, cfg.cnn_groups, d)
        self.image_goal_mlp = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        self.language_goal_mlp = build_language_goal(cfg)  # named for the MLP it was first (checkpoints)
        self.state_in = nn.Linear(state_dim, d) if cfg.use_state else None
        per_frame = len(cameras) * per_camera + (1 if cfg.use_state else 0)
        self.n_tokens = 1 + cfg.obs_horizon * per_frame
        self.encoder_pos = nn.Parameter(torch.randn(self.n_tokens, d) * 0.02)
        self.encoder = nn.ModuleList([EncoderBlock(d, cfg.n_heads, cfg.mlp_ratio, cfg.dropout)
                                      for _ in range(cfg.encoder_layers)])
        self.encoder_norm = nn.LayerNorm(d)

        self.action_in = nn.Linear(action_dim, d)
        self.action_pos = nn.Parameter(torch.randn(cfg.chunk, d) * 0.02)
        self.sigma_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.decoder = nn.ModuleList([DecoderBlock(d, cfg.n_heads, cfg.mlp_ratio, cfg.dropout)
                                      for _ in range(cfg.decoder_layers)])
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        self.action_out = nn.Linear(d, action_dim)
        for layer in (self.final_ada[1], self.action_out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

        self.foresight = MaskedForesight(cfg, len(cameras)) if cfg.use_mgf else None
        self.alignment = LatentAlignment(cfg) if cfg.use_cla else None
        self.localiser = (nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.GELU(), nn.Linear(d, privileged_dim))
                          if cfg.localisation_weight > 0 else None)

        # Masks are data, checked here once; None means "attend everywhere" to SDPA (its fast path).
        enc = ENCODER_SELF.mask(self.n_tokens, self.n_tokens)
        dec = DECODER_SELF.mask(cfg.chunk, cfg.chunk)
        cross = DECODER_CROSS.mask(cfg.chunk, self.n_tokens)
        assert enc.all(), "encoder self-attention must be non-causal"
        assert torch.equal(dec, torch.ones_like(dec).tril()) and not dec.triu(1).any(), "decoder must be causal"
        assert cross.all(), "every action token must see every encoder token"
        self.register_buffer("decoder_self_mask", dec, persistent=False)
        self.encoder_mask = None if enc.all() else enc
        self.cross_mask = None if cross.all() else cross

    # -- encoder ------------------------------------------------------------------------------
    def observation_tokens(self, images: dict[str, torch.Tensor], state: torch.Tensor | None,
                           goal: torch.Tensor | None = None) -> torch.Tensor:
        """images {cam: (B, To, 3, h, w)} in [-1, 1]; state (B, To, S) normalised -> (B, N - 1, d)
        (N - 1 = To·(K+1), or To·(K(1 + h'w') + 1) with spatial_tokens; point_tokens adds GOAL_POINTS
        per camera and frame, after that camera's tokens)

        goal (B, d): the goal tokens the camera CNNs are FiLM-conditioned on; required
        with `goal_film`, and must be None without it.
        """
        return self.observation_tokens_and_heatmaps(images, state, goal)[0]

    def observation_tokens_and_heatmaps(self, images: dict[str, torch.Tensor], state: torch.Tensor | None,
                                        goal: torch.Tensor | None = None, geometry: PointGeometry | None = None
                                        ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """`observation_tokens`, and with `goal_heatmaps` {cam: (B, GOAL_POINTS, h2, w2)} heat-map
        logits of each sample's current (last) frame ({} without). geometry: required with `lift_points`."""
        if self.cfg.lift_points != (geometry is not None):
            raise ValueError("lift_points=True needs each frame's depth, calibration and end-effector position "
                             "(PointGeometry); without it, give none")
        per_frame, heat = [], {}
        for cam in self.cameras:
            x = images[cam]
            cond = None if goal is None else goal.repeat_interleave(x.shape[1], dim=0)  # one per frame
            tokens, maps = self.camera_encoders[cam].encode(x.flatten(0, 1), cond)  # (B·To, d) or (B·To, 1+cells, d)
            per_frame.append(tokens.reshape(x.shape[0], x.shape[1], -1, tokens.shape[-1]))
            if self.point_tokens is not None:
                uv = self.point_tokens[cam].readout(maps)  # read once: for the tokens and for lifting
                lifted = geometry.offsets(cam, uv, x.shape[-2:]) if geometry is not None else ()
                per_frame.append(self.point_tokens[cam](maps, *lifted, uv=uv)
                                 .view(x.shape[0], x.shape[1], GOAL_POINTS, -1))
            if maps is not None:
                heat[cam] = maps.view(x.shape[0], x.shape[1], *maps.shape[1:])[:, -1]
        if self.state_in is not None:
            per_frame.append(self.state_in(state)[:, :, None])
        return torch.cat(per_frame, dim=2).flatten(1, 2), heat  # (B, To, tokens per frame, d) frame-major

    def language_goal(self, embedding: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, language_dim) sentence embeddings, or (B, L, language_dim) token states and (B, L) mask
        with `language_tokens` -> (B, d) goal tokens."""
        return language_goal(self.language_goal_mlp, self.cfg, embedding, mask)

    def image_goal(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) goal frame in [-1, 1] -> (B, d) goal token."""
        return self.image_goal_mlp(self.goal_image_encoder(image))

    def encode(self, obs_tokens: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """obs_tokens (B, N-1, d), goal (B, d) -> encoder output (B, N, d) (non-causal)."""
        x = torch.cat([goal[:, None], obs_tokens], dim=1) + self.encoder_pos
        for block in self.encoder:
            x = block(x, self.encoder_mask)
        return self.encoder_norm(x)

    # -- decoder ------------------------------------------------------------------------------
    def decoder_step(self, x_in: torch.Tensor, noise_level: torch.Tensor, *kv: torch.Tensor) -> torch.Tensor:
        """One evaluation of the denoiser network: x_in (B, chunk, D), noise_level (B,) -> (B, chunk, D).

        kv: every decoder block's cross-attention keys and values, flattened (k0, v0, k1, v1, ...).
        """
        c = self.sigma_mlp(sinusoidal(noise_level, self.cfg.d_model))
        x = self.action_in(x_in) + self.action_pos
        for i, block in enumerate(self.decoder):
            x = block(x, (kv[2 * i], kv[2 * i + 1]), c, self.decoder_self_mask, self.cross_mask)
        shift, scale = self.final_ada(c).chunk(2, dim=-1)
        return self.action_out(_modulate(self.final_norm(x), shift, scale))

    def action_network(self, context: torch.Tensor, traced: bool = False):
        """F(x_in (B, chunk, D), c_noise (B,)) -> (B, chunk, D), conditioned on `context` (B, N, d).

        traced: run a TorchScript trace of `decoder_step` (inference only, no autograd). The ten
        denoising steps of a replan are ~30 small ops each, and the trace drops Python's cost between
        them (about 2x faster per step on a CPU). It shares this model's parameters, so it follows
        training and loading; one trace is kept per batch size, dtype and device.
        """
        # The context is the same at every denoising step: project its keys/values once.
        kv = [t for block in self.decoder for t in block.cross_attn.keys_values(context)]
        step = self._trace(context.shape[0], context.dtype, context.device) if traced else self.decoder_step

        def network(x_in: torch.Tensor, noise_level: torch.Tensor) -> torch.Tensor:
            return step(x_in, noise_level, *kv)

        return network

    def _trace(self, batch: int, dtype: torch.dtype, device: torch.device):
        key = (batch, dtype, device)
        cache = _TRACES.setdefault(self, {})
        if key not in cache:
            d, n, heads = self.cfg.d_model, self.n_tokens, self.cfg.n_heads
            with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                example = (torch.zeros(batch, self.cfg.chunk, self.action_dim, dtype=dtype, device=device),
                           torch.ones(batch, dtype=dtype, device=device),
                           *[torch.zeros(batch, heads, n, d // heads, dtype=dtype, device=device)
                             for _ in range(2 * len(self.decoder))])
                cache[key] = torch.jit.trace(_DecoderStep(self), example, check_trace=False)
        return cache[key]


# model -> {(batch, dtype, device): trace}; kept outside the model so that copies, EMA and state dicts never see it
_TRACES: weakref.WeakKeyDictionary[MDTModel, dict] = weakref.WeakKeyDictionary()


class _DecoderStep(nn.Module):
    """`MDTModel.decoder_step` as a module's forward, so that it can be traced (holds the model, adds nothing)."""

    def __init__(self, model: MDTModel):
        super().__init__()
        self.model = model

    def forward(self, x_in: torch.Tensor, noise_level: torch.Tensor, *kv: torch.Tensor) -> torch.Tensor:
        return self.model.decoder_step(x_in, noise_level, *kv)
