"""Teleoperation: a person drives the robot (or the sim) through the one runner, and demonstrations are recorded.

    device  = make_device("keyboard")                 # hardware.teleop_devices: keyboard, pynput, spacemouse
    teleop  = TeleopPolicy(embodiment.spec, device)   # a Policy: each act() reads the device once
    runner  = Runner(OperatorEnds(embodiment, teleop), teleop,
                     recorder=DatasetWriter(path, embodiment.spec), config=RunnerConfig(realtime=True))
    runner.run_episode()                              # until the operator presses Enter (success) or x (failure)

Because the operator's commands go through the same runner as any policy,
they pass the same safety filter and are recorded in the same dataset format
(LeRobot v3 layout, language motions labelled from the executed actions) as
scripted-expert demonstrations: a dataset of teleoperated episodes trains
exactly like a collected one. `teleop_main` is `embodied teleop`.

Action scaling (ee_delta, the only mode a person can drive): a device input
m in [-1, 1] per axis becomes m x speed x the spec's per-tick bound for that
axis, with speed one of `SPEEDS` (+ / - keys). Example: the tabletop's bound
is 0.03 m per tick at 10 Hz; holding w at speed 0.5 commands dx = 0.015 m
per tick, 0.15 m/s. The gripper dimension is the spec's high bound (open)
or low bound (closed), toggled by space / SpaceMouse button 0; it starts
as the robot's gripper is when the episode starts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from embodied.types import Action, EmbodimentSpec, Observation, StepResult
from hardware.teleop_devices import KEY_HELP, TeleopDevice, TeleopError, make_device

SPEEDS: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)  # fractions of the per-tick bound
DEFAULT_SPEED = 0.5


class TeleopPolicy:
    """An operator's device as a `Policy` for an `ee_delta` embodiment.

    outcome: None while the episode runs; "success" / "failure" once the
    operator ended it (from then on it commands no motion). `OperatorEnds`
    turns the outcome into the end of the episode.
    """

    def __init__(self, spec: EmbodimentSpec, device: TeleopDevice, speed: float = DEFAULT_SPEED):
        if spec.action.mode != "ee_delta":
            raise TeleopError(f"teleoperation drives end-effector motion (ee_delta); {spec.name!r} takes "
                              f"{spec.action.mode} actions: configure the robot with action_mode = 'ee_delta'")
        if speed not in SPEEDS:
            raise ValueError(f"speed {speed} is not one of {SPEEDS}")
        self._spec, self.device = spec, device
        self._speed = SPEEDS.index(speed)
        self._low, self._high = spec.action.low_array.astype(np.float64), spec.action.high_array.astype(np.float64)
        self.outcome: str | None = None
        self.gripper: float | None = None

    @property
    def spec(self) -> EmbodimentSpec:
        return self._spec

    @property
    def speed(self) -> float:
        return SPEEDS[self._speed]

    def reset(self, instruction: str | None = None) -> None:
        self.outcome, self.gripper = None, None

    def act(self, obs: Observation) -> Action:
        """One tick: (7,) = (dpos m, drot axis-angle rad) scaled to the spec's bounds, gripper opening."""
        inp = self.device.poll()
        self._speed = int(np.clip(self._speed + inp.speed_steps, 0, len(SPEEDS) - 1))
        lo, hi = self._low[-1], self._high[-1]
        if self.gripper is None:
            observed = float(obs.state["gripper"][0]) if "gripper" in obs.state else hi
            self.gripper = hi if observed >= (lo + hi) / 2 else lo
        if inp.toggle_gripper % 2:
            self.gripper = lo if self.gripper == hi else hi
        if inp.end and self.outcome is None:
            self.outcome = inp.end
        motion = np.concatenate([inp.translation, inp.rotation]) * self.speed
        if self.outcome is not None:
            motion[:] = 0.0
        # positive input scales to the high bound, negative to the low one
        delta = np.where(motion >= 0, motion * self._high[:6], -motion * self._low[:6])
        return Action(np.append(delta, self.gripper).astype(np.float32), self._spec.action)

    def wait_for_start(self, timeout: float | None = None) -> bool:
        """Block until the operator starts an episode (Enter: True) or stops the session (Backspace / x: False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while deadline is None or time.monotonic() < deadline:
            inp = self.device.poll()
            if inp.end is not None:
                return inp.end == "success"
            time.sleep(0.02)
        raise TimeoutError(f"nobody started the episode within {timeout} s")


class OperatorEnds:
    """An `Embodiment` whose episodes also end when the operator says so (see `TeleopPolicy.outcome`).

    Everything else (spec, reset, hold, workspace, close, ...) is the wrapped
    embodiment's. A simulated task that succeeds on its own still ends as it would.
    """

    def __init__(self, embodiment: Any, teleop: TeleopPolicy):
        self.embodiment, self.teleop = embodiment, teleop

    @property
    def spec(self) -> EmbodimentSpec:
        return self.embodiment.spec

    def reset(self, instruction: str | None = None, seed: int | None = None) -> Observation:
        return self.embodiment.reset(instruction=instruction, seed=seed)

    def step(self, action: Action) -> StepResult:
        result = self.embodiment.step(action)
        if self.teleop.outcome is not None:
            result.done = True
            result.success = self.teleop.outcome == "success"
            result.info["operator"] = self.teleop.outcome
        return result

    def close(self) -> None:
        self.embodiment.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.embodiment, name)


def make_teleop_embodiment(robot: str, **kwargs: Any) -> Any:
    """A registered robot ("sim-twin", "ur5e"), a robot config file (.toml), or a sim env ("tabletop/reach-v0")."""
    if robot.endswith(".toml"):
        from hardware.robots import make_robot

        return make_robot(robot, **kwargs)
    from embodied import registry

    kind = registry.get(robot).kind  # an unknown name raises, listing the known ones
    if kind == "env":
        from embodied.sim import make_embodiment

        return make_embodiment(robot, **kwargs)
    if kind == "robot":
        return registry.make(robot, kind="robot", **kwargs)
    raise TeleopError(f"{robot!r} is a {kind}; teleoperate a robot (e.g. sim-twin) "
                      "or a sim env (e.g. tabletop/reach-v0)")


def teleop_main(robot: str, dataset: str, episodes: int, device: str, *, instruction: str | None = None,
                max_steps: int | None = None, speed: float = DEFAULT_SPEED, terminal: int | None = None,
                **embodiment_kwargs: Any) -> list[Any]:
    """Record `episodes` teleoperated demonstrations on `robot` into the dataset folder `dataset`.

    device: "keyboard" (this terminal), "pynput" (desktop keyboard) or "spacemouse".
    instruction: the task text recorded with each episode (default: the robot's or env's own).
    max_steps: ticks before an episode is cut off unsuccessful (default: the embodiment's own limit, if any).
    terminal: file descriptor of the terminal to read keys from and talk to (default: stdin / stdout).
    embodiment_kwargs: passed to the env or robot factory (e.g. cameras=(), image_size=(128, 128)).
    Each episode starts when the operator presses Enter, so that the scene can be reset in between;
    Backspace / x at that prompt ends the session early. Returns the EpisodeResults.
    """
    from embodied.data import DatasetWriter
    from embodied.runner import Runner, RunnerConfig

    if episodes < 1:
        raise ValueError(f"episodes = {episodes}: record at least one")
    say = _talker(terminal)
    dev = make_device(device, terminal)
    dev.connect()  # first: a missing device must not leave an empty dataset or a started robot behind
    embodiment = writer = None
    results: list[Any] = []
    try:
        embodiment = make_teleop_embodiment(robot, **embodiment_kwargs)
        teleop = TeleopPolicy(embodiment.spec, dev, speed)
        writer = DatasetWriter(Path(dataset), embodiment.spec)
        runner = Runner(OperatorEnds(embodiment, teleop), teleop, recorder=writer,
                        config=RunnerConfig(realtime=True, max_steps=max_steps))
        say(f"teleoperating {robot} with the {device}; recording into {dataset}\n{KEY_HELP}")
        for i in range(episodes):
            say(f"episode {i + 1}/{episodes}: reset the scene, then press Enter to start (x to stop here)")
            if not teleop.wait_for_start():
                say("stopped")
                break
            say(f"episode {i + 1} running: Enter = success, x = failure")
            result = runner.run_episode(instruction)
            results.append(result)
            verdict = "success" if result.success else teleop.outcome or "cut off (step limit or fault)"
            say(f"episode {i + 1} recorded: {verdict}, {result.steps} steps, {result.interventions} safety "
                f"interventions")
    finally:
        dev.close()
        if writer is not None:
            writer.close()
        if embodiment is not None:
            embodiment.close()
    return results


def _talker(terminal: int | None) -> Callable[[str], None]:
    """Print to the operator's terminal (cbreak mode keeps output processing, so '\\n' is a new line)."""
    if terminal is None:
        return lambda text: print(text, flush=True)
    return lambda text: os.write(terminal, (text + "\n").encode())

