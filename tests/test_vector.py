"""The one runner driving B tabletop envs in worker processes: same episodes as one env, safety per slot."""

import numpy as np
import pytest
import torch

from embodied import Action
from embodied.batching import BatchedPolicy, observations_to_batch
from embodied.data.format import STATE, state_dim, video_key
from embodied.episode import EpisodeBuffer
from embodied.runner import EpisodeJob, Runner, RunnerConfig
from embodied.sim import make_embodiment
from embodied.vector import VectorEmbodiment
from policies.bc.configuration import BCConfig
from policies.bc.policy import BCPolicy

TASK, SIZE = "tabletop/reach-v0", (32, 32)


class SpyVector(VectorEmbodiment):
    """The real vector env, remembering every action that was sent to its workers."""

    sent: list[dict[int, np.ndarray]]

    def step(self, actions):
        self.sent.append({i: a.value.copy() for i, a in actions.items()})
        return super().step(actions)


@pytest.fixture(scope="module")
def vec():
    envs = SpyVector(TASK, 2, {"image_size": SIZE})
    envs.sent = []
    yield envs
    envs.close()


@pytest.fixture(scope="module")
def policy(vec):
    """An untrained tiny BC net: deterministic, and its actions depend on the images and state it sees."""
    torch.manual_seed(0)
    s = state_dim(vec.spec)
    stats = {STATE: {"mean": np.zeros(s, np.float32), "std": np.ones(s, np.float32)},
             "action": {"min": np.full(7, -0.02, np.float32), "max": np.full(7, 0.02, np.float32)}}
    for cam in vec.spec.camera_names:
        stats[video_key(cam)] = {"mean": np.full((3, 1, 1), 0.5, np.float32), "std": np.full((3, 1, 1), 0.2, np.float32)}
    config = BCConfig(action_horizon=3, cnn_channels=(8,), feature_dim=16, hidden_dim=32, language="none")
    return BCPolicy.from_dataset_meta(config, vec.spec, stats).eval()


class NaNPolicy:
    """A batched policy gone wrong: every chunk it returns is NaN."""

    def __init__(self, spec):
        self.spec, self.calls = spec, 0

    def reset(self, instruction=None):
        pass

    def act(self, obs):
        raise AssertionError("with a vector of envs the runner must call act_batch")

    def act_batch(self, observations):
        self.calls += 1
        return [Action(np.full((2, 7), np.nan, np.float32), self.spec.action) for _ in observations]


def trajectories(results):
    return {r.seed: np.stack([f.obs.state["ee_pos"] for f in r.recorded.frames]) for r in results}


def test_vector_runs_give_the_same_episodes_as_one_env(vec, policy):
    seeds = [5, 6, 7]  # three jobs on two slots: slot 0 runs seed 7 after seed 5 ends
    batched = Runner(vec, BatchedPolicy(policy), recorder=[EpisodeBuffer(), EpisodeBuffer()],
                     config=RunnerConfig(max_steps=8))
    results = batched.run_episodes([EpisodeJob(seed=s) for s in seeds])
    assert [r.seed for r in results] == seeds and [r.slot for r in results] == [0, 1, 0]
    assert all(r.steps == 8 and len(r.recorded) == 8 for r in results)
    one = make_embodiment(TASK, image_size=SIZE)
    try:
        # The plain single-robot path: policy.act on one env, run_episode.
        single = [Runner(one, policy, recorder=EpisodeBuffer(), config=RunnerConfig(max_steps=8)).run_episode(seed=s)
                  for s in seeds]
    finally:
        one.close()
    got, want = trajectories(results), trajectories(single)
    for s in seeds:
        np.testing.assert_allclose(got[s], want[s], atol=1e-5, err_msg=f"seed {s} differs between B=2 and B=1")
    assert not np.allclose(got[5], got[6]), "different seeds must give different episodes"
    assert [r.instruction for r in results] == [r.instruction for r in single]


def test_nan_from_a_batched_policy_never_reaches_an_env(vec):
    vec.sent.clear()
    bad = NaNPolicy(vec.spec)
    results = Runner(vec, bad, config=RunnerConfig(max_steps=5)).run_episodes([EpisodeJob(seed=s) for s in (0, 1)])
    assert bad.calls == 3  # ticks 0, 2, 4: one call for both slots each time their 2-step chunks run out
    assert len(vec.sent) == 5 and all(set(step) == {0, 1} for step in vec.sent)
    assert all(np.all(np.isfinite(a)) for step in vec.sent for a in step.values())
    assert all(r.interventions >= 5 for r in results)
    assert all(np.all(np.isfinite(o.state["joint_pos"])) for o in vec.last_obs)


def test_a_finished_slot_is_parked_not_stepped(vec, policy):
    vec.sent.clear()
    runner = Runner(vec, BatchedPolicy(policy), config=RunnerConfig(max_steps=4))
    runner.run_episodes([EpisodeJob(seed=0)])  # one job: slot 1 idles the whole time
    assert len(vec.sent) == 4 and all(set(step) == {0} for step in vec.sent)


def test_several_envs_need_act_batch_and_one_recorder_each(vec, policy):
    with pytest.raises(TypeError, match="act_batch.*num_envs=1.*BatchedPolicy"):
        Runner(vec, policy)
    with pytest.raises(ValueError, match="list of 2 recorders"):
        Runner(vec, BatchedPolicy(policy), recorder=EpisodeBuffer())


def test_observations_to_batch_builds_the_training_window_keys(vec, policy):
    obs = [vec.reset(0, seed=1), vec.reset(1, seed=2)]
    batch = observations_to_batch(obs, vec.spec, {"obs_horizon": 2, "cameras": ("front",)})
    assert batch[STATE].shape == (2, 2, state_dim(vec.spec)) and batch[STATE].dtype == torch.float32
    assert batch[video_key("front")].shape == (2, 2, *SIZE, 3) and batch[video_key("front")].dtype == torch.uint8
    assert video_key("wrist") not in batch
    assert batch["task"] == [o.instruction for o in obs] and all(batch["task"])
    assert torch.equal(batch[STATE][:, 0], batch[STATE][:, 1])  # one frame, padded like an episode start
    with pytest.raises(ValueError, match="2 frames of history.*num_envs=1"):
        BatchedPolicy(type("TwoFrames", (), {"predict": None, "spec": vec.spec,
                                             "data_requirements": lambda self: {"obs_horizon": 2}})())
