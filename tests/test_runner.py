"""The one runner on the real tabletop env: chunks, safety, corrections, recording."""

import numpy as np
import pytest

from embodied import Action, Correction, Observation
from embodied.channels import ScheduledChannel
from embodied.episode import EpisodeBuffer
from embodied.expert import ExpertPolicy
from embodied.runner import EpisodeJob, Runner, RunnerConfig
from embodied.sim import GymEmbodiment


class SpyEmbodiment(GymEmbodiment):
    """The real env, remembering every action that reached it."""

    def __init__(self, env):
        super().__init__(env)
        self.received: list[np.ndarray] = []

    def step(self, action):
        self.received.append(action.value.copy())
        return super().step(action)


@pytest.fixture(scope="module")
def robot():
    from embodied import registry

    emb = SpyEmbodiment(registry.make("tabletop/pick-v0", cameras=()))
    yield emb
    emb.close()


class ConstantPolicy:
    """Sends the same action (or chunk) every time; counts how often it is asked."""

    def __init__(self, spec, value):
        self.spec, self.value, self.calls, self.corrections = spec, np.asarray(value, np.float32), 0, []

    def reset(self, instruction=None):
        self.calls = 0

    def act(self, obs: Observation) -> Action:
        self.calls += 1
        return Action(self.value, self.spec.action)

    def correct(self, correction: Correction) -> None:
        self.corrections.append(correction)


def test_expert_through_runner_succeeds_and_records_labels(robot):
    rec = EpisodeBuffer()
    result = Runner(robot, ExpertPolicy(robot), recorder=rec).run_episode(seed=3)
    ep = result.recorded
    assert result.success and ep.success
    assert len(ep) == result.steps > 5
    motions = [f.language_motion for f in ep.frames]
    assert all(motions) and any(m.startswith("move arm") for m in motions)
    assert "close gripper" in " ".join(motions)
    assert all(f.subtask == result.instruction for f in ep.frames)


def test_nan_actions_never_reach_the_simulator(robot):
    bad = np.full(7, np.nan, np.float32)
    robot.received.clear()
    policy = ConstantPolicy(robot.spec, bad)
    result = Runner(robot, policy, config=RunnerConfig(max_steps=5)).run_episode(seed=0)
    assert len(robot.received) == 5
    assert all(np.all(np.isfinite(a)) for a in robot.received)
    assert result.interventions >= 5
    assert np.all(np.isfinite(robot.env.unwrapped.data.qpos))


def test_workspace_is_enforced_in_simulation(robot):
    spec = robot.spec.action
    up_and_away = np.array([spec.high[0], spec.high[1], spec.high[2], 0, 0, 0, 1], np.float32) * 10
    runner = Runner(robot, ConstantPolicy(robot.spec, up_and_away), config=RunnerConfig(max_steps=60))
    runner.run_episode(seed=0)
    low, high = runner.safety.config.workspace_low, runner.safety.config.workspace_high
    ee = robot.last_obs.state["ee_pos"]
    assert low is not None, "the tabletop env must publish its workspace box"
    assert np.all(ee <= np.asarray(high) + 0.02) and np.all(ee >= np.asarray(low) - 0.02)
    # every commanded target stayed in the box (up to one tick of tracking error)
    assert all(np.abs(a[:3]).max() <= spec.high[0] + 1e-6 for a in robot.received)


def test_chunks_run_open_loop_until_empty(robot):
    chunk = np.zeros((4, 7), np.float32)
    chunk[:, 6] = 1.0
    policy = ConstantPolicy(robot.spec, chunk)
    result = Runner(robot, policy, config=RunnerConfig(max_steps=10)).run_episode(seed=0)
    assert result.steps == 10 and policy.calls == 3  # ticks 0, 4, 8


def test_corrections_reach_policy_recording_and_force_a_replan(robot):
    chunk = np.zeros((5, 7), np.float32)
    chunk[:, 6] = 1.0
    policy = ConstantPolicy(robot.spec, chunk)
    rec = EpisodeBuffer()
    channel = ScheduledChannel({2: "a bit more to the left"})
    result = Runner(robot, policy, recorder=rec, channels=[channel], config=RunnerConfig(max_steps=8)).run_episode(seed=0)
    assert [c.text for c in policy.corrections] == ["a bit more to the left"]
    assert [len(f.corrections) for f in result.recorded.frames] == [0, 0, 1, 0, 0, 0, 0, 0]
    assert policy.calls == 3  # ticks 0 and 2 (the correction drops the rest of the chunk), then 7


def test_a_crashing_policy_discards_the_episode(robot):
    class Boom(ConstantPolicy):
        def act(self, obs):
            if self.calls == 3:
                raise RuntimeError("policy died")
            return super().act(obs)

    rec = EpisodeBuffer()
    policy = Boom(robot.spec, np.r_[np.zeros(6), 1.0])
    with pytest.raises(RuntimeError, match="policy died"):
        Runner(robot, policy, recorder=rec).run_episode(seed=0)
    rec.start_episode("next")  # the buffer is free again: the broken episode was discarded


def test_an_interrupt_after_an_episode_is_saved_keeps_it(robot, tmp_path):
    """Ctrl-C or SIGTERM (deploy turns it into SystemExit) can land in on_result, just after an episode was
    saved: the interrupt propagates as itself and the saved episode stays in the dataset."""
    from embodied.data import DatasetWriter, open_dataset

    def interrupt(job, result):
        raise KeyboardInterrupt

    policy = ConstantPolicy(robot.spec, np.r_[np.zeros(6), 1.0])
    with DatasetWriter(tmp_path / "d", robot.spec, robot_type=robot.spec.name) as writer:
        runner = Runner(robot, policy, recorder=writer, config=RunnerConfig(max_steps=3))
        with pytest.raises(KeyboardInterrupt):
            runner.run_episodes([EpisodeJob(seed=0), EpisodeJob(seed=1)], on_result=interrupt)
    assert open_dataset(tmp_path / "d").num_episodes == 1


def test_runner_refuses_a_policy_for_another_embodiment(robot):
    from embodied import ActionSpec, EmbodimentSpec, SpecMismatchError

    other = EmbodimentSpec("other", (), dict(robot.spec.state), ActionSpec.ee_delta(0.03, 0.2, 20.0))
    with pytest.raises(SpecMismatchError, match="20.0 Hz"):
        Runner(robot, ConstantPolicy(other, np.zeros(7)))
