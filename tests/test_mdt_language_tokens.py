"""MDTConfig.language_tokens: the goal token attends over the frozen encoder's token states.

    embodied train mdt --policy.language-tokens ...

Mean pooling blurs which named object is the subject: "stack the red block on
the blue block" and its reverse pool to nearly the same sentence vector. The
first test shows what that costs on instructions the goal encoder never saw.
"""

import dataclasses
import itertools

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from embodied.checkpoint import CheckpointError
from embodied.data import open_dataset
from embodied.data.synthetic import synthetic_observation, write_located_dataset, write_synthetic_dataset
from embodied.language import shared_encoder
from embodied.torch_data import WindowDataset, collate
from policies.mdt import MDTConfig, MDTPolicy
from policies.mdt.model import build_language_goal, language_goal

TINY = MDTConfig(cnn_widths=(8, 8), cnn_groups=4, d_model=32, n_heads=2, encoder_layers=1, decoder_layers=2,
                 image_size=(16, 16), mgf_image_size=(16, 16), mgf_patch=8, mgf_dim=32, cla_dim=16,
                 language_tokens=True)
COLOURS = ("red", "blue", "green", "yellow", "purple", "orange")
TEMPLATES = ("stack the {} block on the {} block", "put the {} block on top of the {} block",
             "move the {} block next to the {} block", "place the {} cube beside the {} cube")


@pytest.fixture(scope="module")
def language():
    return shared_encoder()


def subject_accuracy(language, tokens: bool) -> float:
    """Train the goal encoder (+ a linear read-out) to name the colour of the block to move, on 22 of
    the 30 ordered colour pairs; return its accuracy on the other 8 (each colour pair appears in
    training only in the other order or not at all). Chance among the two colours named: 0.5."""
    pairs = list(itertools.permutations(range(len(COLOURS)), 2))
    held_out = pairs[::4][:8]
    split = {"train": [p for p in pairs if p not in held_out], "test": held_out}
    cfg = MDTConfig(d_model=64, n_heads=4, language_tokens=tokens)
    torch.manual_seed(0)
    goal, read_out = build_language_goal(cfg), nn.Linear(cfg.d_model, len(COLOURS))
    data = {}
    for name, ps in split.items():
        texts = [t.format(COLOURS[a], COLOURS[b]) for a, b in ps for t in TEMPLATES]
        y = torch.tensor([a for a, _ in ps for _ in TEMPLATES])
        if tokens:
            states, mask = language.encode_tokens(texts)
            data[name] = (torch.as_tensor(states), torch.as_tensor(mask), y)
        else:
            data[name] = (torch.as_tensor(language.encode(texts)), None, y)
    opt = torch.optim.AdamW([*goal.parameters(), *read_out.parameters()], lr=1e-3)
    x, mask, y = data["train"]
    for _ in range(300):
        loss = F.cross_entropy(read_out(language_goal(goal, cfg, x, mask)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05  # both fit what they saw
    x, mask, y = data["test"]
    with torch.no_grad():
        return (read_out(language_goal(goal, cfg, x, mask)).argmax(1) == y).float().mean().item()


def test_attending_over_tokens_finds_the_subject_of_unseen_instructions_and_mean_pooling_cannot(language,
                                                                                              one_thread):
    tokens, pooled = subject_accuracy(language, True), subject_accuracy(language, False)
    assert tokens >= 0.9, tokens
    assert pooled <= 0.75, pooled  # measured 0.22: it cannot tell which named colour is the subject


def test_a_policy_with_language_tokens_trains_saves_and_acts_the_same(tmp_path, language, one_thread):
    data = open_dataset(write_synthetic_dataset(tmp_path / "d", num_episodes=2, length=12))
    torch.manual_seed(0)
    policy = MDTPolicy.from_dataset_meta(TINY, data.spec, data.stats, language)
    req = policy.data_requirements()
    windows = WindowDataset([data], req["obs_horizon"], req["action_horizon"], cameras=req["cameras"],
                            future_offset=req["future_offset"])
    batch = collate([windows[i] for i in range(len(windows))])
    policy.loss(batch)[0].backward()
    assert policy.model.language_goal_mlp.pos.grad.abs().sum() > 0  # the word positions are learned
    loaded = MDTPolicy.from_pretrained(policy.save_pretrained(tmp_path / "mdt"), language_encoder=language)
    assert loaded.config.language_tokens
    a = policy.predict(batch, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, loaded.predict(batch, generator=torch.Generator().manual_seed(7)))
    loaded.reset("stack the red block on the blue block")
    assert loaded.act(synthetic_observation(data.spec, 0)).value.shape == (data.spec.action.dim,)


def test_perception_init_carries_the_token_goal_and_refuses_a_pooled_one(tmp_path, language):
    data = open_dataset(write_located_dataset(tmp_path / "d", num_episodes=1))
    stage = MDTPolicy.from_dataset_meta(dataclasses.replace(TINY, goal_film=True, stage="perception"), data.spec,
                                        data.stats, language)
    source = str(stage.save_pretrained(tmp_path / "perception"))
    started = MDTPolicy.from_dataset_meta(dataclasses.replace(TINY, goal_film=True, perception_init=source),
                                          data.spec, data.stats, language)
    theirs = stage.model.language_goal_mlp.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in started.model.language_goal_mlp.state_dict().items())
    with pytest.raises(CheckpointError, match="language_tokens: True there, False here"):
        MDTPolicy.from_dataset_meta(dataclasses.replace(TINY, goal_film=True, language_tokens=False,
                                                        perception_init=source), data.spec, data.stats, language)
