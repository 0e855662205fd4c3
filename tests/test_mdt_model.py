"""MDT networks: token shapes, the attention structure (non-causal encoder, causal decoder), MGF and CLA heads."""

import copy

import pytest
import torch

from policies.mdt.configuration import MDTConfig
from policies.mdt.model import DECODER_SELF, ENCODER_SELF, AttentionRule, MDTModel, patchify

TINY = {"cnn_widths": (8, 8), "cnn_groups": 4, "d_model": 32, "n_heads": 2, "encoder_layers": 1, "decoder_layers": 2,
        "image_size": (32, 32), "mgf_image_size": (16, 16), "mgf_patch": 8, "mgf_dim": 32, "cla_dim": 16}
CAMS = ("front", "wrist")


def _model(**kw) -> MDTModel:
    torch.manual_seed(0)
    return MDTModel(MDTConfig(**(TINY | kw)), CAMS, state_dim=22, action_dim=7).eval()


def _inputs(b: int, to: int = 1):
    images = {c: torch.rand(b, to, 3, 32, 32) * 2 - 1 for c in CAMS}
    return images, torch.randn(b, to, 22)


def _perturb_decoder_outputs(m: MDTModel):
    """Give the zero-initialised AdaLN-Zero and output layers random weights, so every path carries signal."""
    with torch.no_grad():
        for block in m.decoder:
            block.ada[1].weight.normal_(0, 0.1)
        m.final_ada[1].weight.normal_(0, 0.1)
        m.action_out.weight.normal_(0, 0.1)


@pytest.mark.parametrize("obs_horizon,use_state", [(1, True), (2, False)])
def test_shapes_through_the_model(obs_horizon, use_state):
    m = _model(obs_horizon=obs_horizon, use_state=use_state)
    images, state = _inputs(3, obs_horizon)
    tokens = m.observation_tokens(images, state)
    per_frame = len(CAMS) + int(use_state)
    assert tokens.shape == (3, obs_horizon * per_frame, 32)
    goal = m.language_goal(torch.randn(3, 384))
    assert goal.shape == (3, 32) and m.image_goal(torch.rand(3, 3, 32, 32)).shape == (3, 32)
    context = m.encode(tokens, goal)
    assert context.shape == (3, 1 + obs_horizon * per_frame, 32) == (3, m.n_tokens, 32)
    out = m.action_network(context)(torch.randn(3, 10, 7), torch.zeros(3))
    assert out.shape == (3, 10, 7)
    future = torch.rand(3, len(CAMS), 3, 16, 16)
    assert m.foresight.loss(context, future).ndim == 0
    assert m.alignment.loss(context, context.flip(0)).ndim == 0


def test_attention_rules_make_the_masks():
    assert ENCODER_SELF.mask(3, 3).all()
    assert torch.equal(DECODER_SELF.mask(3, 3), torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool))
    with pytest.raises(ValueError, match="unknown attention rule"):
        AttentionRule("sideways").mask(2, 2)
    m = _model()
    assert torch.equal(m.decoder_self_mask, torch.ones(10, 10, dtype=torch.bool).tril())
    assert m.encoder_mask is None and m.cross_mask is None  # everything visible: SDPA's unmasked path


def test_decoder_is_causal_over_action_tokens():
    m = _model()
    _perturb_decoder_outputs(m)
    images, state = _inputs(1)
    net = m.action_network(m.encode(m.observation_tokens(images, state), m.language_goal(torch.randn(1, 384))))
    x = torch.randn(1, 10, 7)
    later = x.clone()
    later[:, 6:] += 1.0
    a, b = net(x, torch.zeros(1)), net(later, torch.zeros(1))
    assert torch.allclose(a[:, :6], b[:, :6], atol=1e-6)  # tokens 0..5 never see 6..9
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_encoder_is_not_causal_and_the_goal_reaches_the_actions():
    m = _model()
    _perturb_decoder_outputs(m)
    images, state = _inputs(1)
    tokens = m.observation_tokens(images, state)
    goal = m.language_goal(torch.randn(1, 384))
    changed = tokens.clone()
    changed[:, -1] += torch.randn(32)  # the last token (state) ...
    assert not torch.allclose(m.encode(tokens, goal)[:, 0], m.encode(changed, goal)[:, 0])  # ... reaches the first
    x, level = torch.randn(1, 10, 7), torch.zeros(1)
    other_goal = m.language_goal(torch.randn(1, 384))
    assert not torch.allclose(m.action_network(m.encode(tokens, goal))(x, level),
                              m.action_network(m.encode(tokens, other_goal))(x, level))


def test_adaln_zero_blocks_start_as_identity_and_the_noise_level_conditions_them():
    m = _model()
    images, state = _inputs(2)
    context = m.encode(m.observation_tokens(images, state), m.language_goal(torch.randn(2, 384)))
    x = torch.randn(2, 10, m.cfg.d_model)
    kv = m.decoder[0].cross_attn.keys_values(context)
    c = torch.randn(2, m.cfg.d_model)
    assert torch.equal(m.decoder[0](x, kv, c, m.decoder_self_mask, None), x)
    _perturb_decoder_outputs(m)
    net = m.action_network(context)
    y = torch.randn(2, 10, 7)
    assert not torch.allclose(net(y, torch.full((2,), -1.0)), net(y, torch.full((2,), 1.0)))


def test_patchify_orders_patches_row_major():
    img = torch.arange(2 * 4 * 4, dtype=torch.float32).view(1, 2, 4, 4)
    p = patchify(img, 2)
    assert p.shape == (1, 4, 8)
    # patch 1 is the top-right 2x2 block; channels are the fastest axis
    assert p[0, 1].tolist() == [2, 18, 3, 19, 6, 22, 7, 23]


def test_mgf_loss_counts_only_hidden_patches():
    m = _model(mgf_mask_ratio=0.5)
    images, state = _inputs(2)
    context = m.encode(m.observation_tokens(images, state), m.language_goal(torch.randn(2, 384)))
    future = torch.rand(2, len(CAMS), 3, 16, 16)
    # With the visible-patch embedding zeroed, visible pixels can enter the loss only as targets: they must not.
    with torch.no_grad():
        m.foresight.patch_in.weight.zero_()
    base = m.foresight.loss(context, future, torch.Generator().manual_seed(1))
    hidden = torch.rand(2, m.foresight.n_patches, generator=torch.Generator().manual_seed(1)).argsort(-1) < 4
    patched = patchify(future.flatten(0, 1), 8).view(2, 8, -1).clone()
    patched[~hidden] = 5.0
    restored = patched.view(2, 2, 2, 2, 8, 8, 3).permute(0, 1, 6, 2, 4, 3, 5).reshape(2, 2, 3, 16, 16)
    assert torch.allclose(m.foresight.loss(context, restored, torch.Generator().manual_seed(1)), base, atol=1e-6)
    patched[hidden] = 5.0
    everything = patched.view(2, 2, 2, 2, 8, 8, 3).permute(0, 1, 6, 2, 4, 3, 5).reshape(2, 2, 3, 16, 16)
    assert m.foresight.loss(context, everything, torch.Generator().manual_seed(1)) > base + 1


def test_cla_prefers_matching_pairs_and_learns_its_temperature():
    m = _model()
    a = torch.randn(6, 5, 32)
    matched = m.alignment.loss(a, a)
    shuffled = m.alignment.loss(a, a[torch.tensor([1, 2, 3, 4, 5, 0])])
    assert matched < shuffled
    assert m.alignment.logit_scale.requires_grad
    matched.backward()
    assert m.alignment.logit_scale.grad is not None


def test_invalid_config_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="execute_steps"):
        MDTConfig(chunk=10, execute_steps=11)
    with pytest.raises(ValueError, match="instruction_probs"):
        MDTConfig(instruction_probs=(0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="mgf_patch"):
        MDTConfig(mgf_image_size=(30, 30), mgf_patch=8)


def test_traced_decoder_matches_eager_and_follows_weight_changes():
    m = MDTModel(MDTConfig(), ("front",), state_dim=5, action_dim=7).eval()
    context = torch.randn(2, m.n_tokens, 128)
    x, level = torch.randn(2, 10, 7), torch.tensor([0.2, -0.4])
    with torch.inference_mode():
        torch.testing.assert_close(m.action_network(context, traced=True)(x, level),
                                   m.action_network(context)(x, level))
    with torch.no_grad():
        m.action_out.weight.add_(0.5)  # training or loading changes the weights in place: the trace follows
    with torch.inference_mode():
        torch.testing.assert_close(m.action_network(context, traced=True)(x, level),
                                   m.action_network(context)(x, level))
    assert not any("trace" in k for k in m.state_dict())
    copy.deepcopy(m)  # EMA copies the model; traces live outside it


def test_keypoints_from_finer_stages_place_a_small_bright_spot():
    from policies.mdt.vision import CameraEncoder, soft_argmax

    spot = torch.zeros(1, 1, 16, 16)
    spot[0, 0, 3, 12] = 20.0  # row 3, column 12
    x, y = soft_argmax(spot)[0].tolist()
    assert x == pytest.approx(-1 + 2 * 12 / 15, abs=0.01) and y == pytest.approx(-1 + 2 * 3 / 15, abs=0.01)
    coarse, fine = CameraEncoder((8, 8, 16), 4, 32), CameraEncoder((8, 8, 16), 4, 32, keypoint_stages=3)
    assert coarse.proj.in_features == 2 * 16 + 16 and fine.proj.in_features == 2 * (8 + 8 + 16) + 16
    assert fine(torch.rand(2, 3, 32, 32)).shape == (2, 32)
    with pytest.raises(ValueError, match="keypoint_stages=4 must be in 1..3"):
        CameraEncoder((8, 8, 16), 4, 32, keypoint_stages=4)


def test_spatial_tokens_keep_one_token_per_cell_where_a_spot_is():
    """spatial_tokens: each camera gives its pooled token, then one per cell of its last map; a bright spot
    changes the tokens of the cells around it, not those across the image."""
    from policies.mdt.vision import CameraEncoder, feature_map_size

    assert feature_map_size((64, 64), 4) == (4, 4) and feature_map_size((96, 80), 3) == (12, 10)
    torch.manual_seed(0)
    enc = CameraEncoder((8, 8), 4, 16, spatial=feature_map_size((16, 16), 2)).eval()
    blank = torch.zeros(1, 3, 16, 16)
    spot = blank.clone()
    spot[0, :, 1:3, 1:3] = 1.0  # top-left corner: cell (0, 0) of the 4x4 map
    with torch.no_grad():
        a, b = enc(blank), enc(spot)
    assert a.shape == (1, 1 + 16, 16)
    change = (a - b).norm(dim=-1)[0, 1:].view(4, 4)
    # GroupNorm spreads a little of any change over the whole map; the spot's own cell changes most.
    assert change.argmax() == 0 and change[0, 0] > 3 * change[3, 3]
    with pytest.raises(ValueError, match="built for \\(4, 4\\)"):
        enc(torch.zeros(1, 3, 32, 32))
    m = MDTModel(MDTConfig(**(TINY | {"spatial_tokens": True})), CAMS, state_dim=22, action_dim=7)
    cells = feature_map_size(TINY["image_size"], len(TINY["cnn_widths"]))
    assert m.n_tokens == 1 + TINY.get("obs_horizon", 1) * (len(CAMS) * (1 + cells[0] * cells[1]) + 1)
