"""Keyboard teleoperation through a real pseudo-terminal, on the simulated tabletop, recorded into a real dataset.

The test plays the operator: it reads the prompts that `teleop_main` prints
to the terminal and types real key bytes into it (a held key as auto-repeat,
one byte every 30 ms), while the runner drives the MuJoCo tabletop at its
10 Hz control rate. The dataset is then read back with embodied.data and the
recorded actions and arm motion are checked against the keys pressed.
"""

from __future__ import annotations

import os
import select
import threading
import time

import numpy as np
import pytest

from embodied.data import open_dataset
from embodied.types import ActionSpec, EmbodimentSpec, Observation
from hardware.teleop import DEFAULT_SPEED, TeleopPolicy, teleop_main
from hardware.teleop_devices import KEY_HELP, SpaceMouse, TeleopError, TerminalKeyboard, make_device

REACH = "tabletop/reach-v0"
BOUND = 0.03  # m per tick: the tabletop's ee_delta translation bound
ROT_BOUND = 0.2  # rad per tick
AUTO_REPEAT_S = 0.03


class Operator:
    """A person at a terminal: reads what the program prints, types keys, holds them down."""

    def __init__(self, master: int):
        self.master, self.screen = master, ""

    def expect(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.screen:
            left = deadline - time.monotonic()
            assert left > 0, f"never saw {text!r}; the terminal shows:\n{self.screen}"
            if select.select([self.master], [], [], min(left, 0.1))[0]:
                self.screen += os.read(self.master, 4096).decode(errors="replace")
        self.screen = self.screen[self.screen.index(text) + len(text):]  # later expects look further on

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def hold(self, key: str, seconds: float) -> None:
        """What a terminal sends while a key is held: the key, auto-repeated."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.type(key)
            time.sleep(AUTO_REPEAT_S)


@pytest.fixture
def terminal():
    master, slave = os.openpty()
    yield master, slave
    os.close(master)
    os.close(slave)


def test_keyboard_demonstrations_are_recorded_as_the_keys_say(terminal, tmp_path):
    master, slave = terminal
    dataset = tmp_path / "teleop-demos"
    done: dict = {}

    def session() -> None:
        try:
            done["results"] = teleop_main(REACH, str(dataset), episodes=2, device="keyboard", terminal=slave,
                                          cameras=())
        except Exception as e:  # noqa: BLE001 - surfaced by the main thread below
            done["error"] = e

    thread = threading.Thread(target=session, daemon=True)
    thread.start()
    person = Operator(master)
    person.expect("Enter end episode (success)")  # the key map is shown first
    person.expect("press Enter to start")
    person.type("\r")
    person.expect("episode 1 running")
    person.hold("w", 1.0)  # forward
    time.sleep(0.4)
    person.hold("a", 1.0)  # left
    person.type(" ")  # close the gripper
    time.sleep(0.4)
    person.type("\r")  # success
    person.expect("episode 1 recorded: success")
    person.expect("press Enter to start")
    person.type("\r")
    person.expect("episode 2 running")
    person.hold("r", 0.8)  # up
    person.type("x")  # failure
    person.expect("episode 2 recorded: failure")
    thread.join(timeout=30)
    assert "error" not in done, done.get("error")
    assert [r.success for r in done["results"]] == [True, False]

    ds = open_dataset(dataset)
    assert len(ds) == 2 and ds.successes == [True, False]
    first, second = ds.episode(0), ds.episode(1)
    assert first.task == done["results"][0].instruction and first.task  # the env's own wording of the task

    a = first.actions
    step = DEFAULT_SPEED * BOUND  # half the bound: 0.015 m per tick
    forward, left = np.nonzero(a[:, 0] > 0)[0], np.nonzero(a[:, 1] > 0)[0]
    assert len(forward) >= 6 and len(left) >= 6
    np.testing.assert_allclose(a[forward, 0], step, rtol=1e-6)
    np.testing.assert_allclose(a[left, 1], step, rtol=1e-6)
    assert not np.any(a[:, 0] < 0) and not np.any(a[:, 1] < 0) and not np.any(a[:, 2:6])
    assert forward.mean() < left.mean() and forward[0] < left[0]
    # The arm really went forward, then left (MuJoCo physics, the same integration as the real robot).
    x, y = first.state["ee_pos"][:, 0], first.state["ee_pos"][:, 1]
    assert x[forward[-1] + 1] - x[forward[0]] > 0.05
    assert y[left[-1] + 1] - y[left[0]] > 0.05
    # Gripper: open until space, closed after it.
    closed = np.nonzero(a[:, 6] == 0.0)[0]
    assert a[0, 6] == 1.0 and len(closed) >= 2 and closed[0] > left[0]
    assert np.all(a[closed[0]:, 6] == 0.0)
    # The language motions were labelled from these actions, as in collected data.
    assert any("forward" in m for m in first.language_motion) and any("left" in m for m in first.language_motion)

    b = second.actions
    up = np.nonzero(b[:, 2] > 0)[0]
    assert len(up) >= 4 and not np.any(b[:, :2]) and np.all(b[:, 6] == 1.0)  # a new episode starts open again
    assert second.state["ee_pos"][up[-1] + 1, 2] - second.state["ee_pos"][up[0], 2] > 0.03


class SpecOnly:
    """Just enough of an observation source to call `act` directly."""

    spec = EmbodimentSpec("arm", (), {"joint_pos": 6, "ee_pos": 3, "ee_quat": 4, "gripper": 1},
                          ActionSpec.ee_delta(BOUND, ROT_BOUND, 10.0))

    @staticmethod
    def obs(gripper: float = 1.0) -> Observation:
        return Observation(state={"gripper": np.array([gripper], np.float32)})


def test_keys_become_actions_scaled_to_the_bounds(terminal):
    master, slave = terminal
    keyboard = TerminalKeyboard(slave, hold_s=0.15)
    keyboard.connect()
    teleop = TeleopPolicy(SpecOnly.spec, keyboard)
    teleop.reset("demo")
    try:
        def act(keys: str, gripper: float = 1.0) -> np.ndarray:
            os.write(master, keys.encode())
            time.sleep(0.02)
            return teleop.act(SpecOnly.obs(gripper)).value

        np.testing.assert_allclose(act("w"), [0.5 * BOUND, 0, 0, 0, 0, 0, 1], rtol=1e-6)
        np.testing.assert_allclose(act("++d"), [BOUND, -BOUND, 0, 0, 0, 0, 1], rtol=1e-6)  # w still held, top speed
        time.sleep(0.2)  # released: no byte for longer than hold_s
        np.testing.assert_allclose(act(""), [0, 0, 0, 0, 0, 0, 1])
        np.testing.assert_allclose(act("ws"), [0, 0, 0, 0, 0, 0, 1])  # opposite keys cancel
        np.testing.assert_allclose(act("+q"), [0, 0, 0, 0, 0, ROT_BOUND, 1], rtol=1e-6)  # already at top speed
        time.sleep(0.2)
        # slowest speed; arrow keys and Alt+w are escape sequences, not w
        np.testing.assert_allclose(act("---\x1b[A\x1bwk"), [0, 0, 0, 0, -0.1 * ROT_BOUND, 0, 1], rtol=1e-6)
        assert act(" ")[6] == 0.0 and act("  ")[6] == 0.0 and act(" ")[6] == 1.0
        assert teleop.outcome is None
        last = act("w\x7f")
        assert teleop.outcome == "failure" and not np.any(last[:6])  # ended: no more motion
    finally:
        keyboard.close()


def test_the_gripper_starts_as_the_robot_is(terminal):
    _, slave = terminal
    keyboard = TerminalKeyboard(slave)
    keyboard.connect()
    try:
        teleop = TeleopPolicy(SpecOnly.spec, keyboard)
        teleop.reset()
        assert teleop.act(SpecOnly.obs(gripper=0.1)).value[6] == 0.0
    finally:
        keyboard.close()


def test_spacemouse_axes_map_to_the_robot_base():
    """pyspacemouse's own state type (no device here): x right, y away, z up -> base x away, y left, z up."""
    from pyspacemouse import SpaceMouseState
    from pyspacemouse.types import ButtonState

    mouse = SpaceMouse(deadzone=0.1)
    away_and_right = SpaceMouseState(x=0.5, y=0.8, z=0.05, roll=0.0, pitch=0.3, yaw=-0.6, buttons=ButtonState([1, 0]))
    inp = mouse.to_input(away_and_right)
    np.testing.assert_allclose(inp.translation, [0.8, -0.5, 0.0])  # z inside the dead zone
    np.testing.assert_allclose(inp.rotation, [0.3, 0.0, -0.6])
    assert inp.toggle_gripper == 1 and inp.end is None
    still_held = mouse.to_input(SpaceMouseState(buttons=ButtonState([1, 1])))
    assert still_held.toggle_gripper == 0 and still_held.end == "success"  # a held button counts once


def test_unusable_devices_say_what_to_do(terminal, tmp_path):
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(TeleopError, match="not one.*terminal"):
            TerminalKeyboard(read_end).connect()
    finally:
        os.close(read_end)
        os.close(write_end)
    with pytest.raises(TeleopError, match="no SpaceMouse found.*--device keyboard"):
        make_device("spacemouse", terminal[1]).connect()
    if not os.environ.get("DISPLAY"):
        with pytest.raises(TeleopError, match="DISPLAY"):
            make_device("pynput").connect()
    with pytest.raises(TeleopError, match="unknown teleop device 'joystick'"):
        make_device("joystick")
    joints = EmbodimentSpec("arm", (), {"joint_pos": 1, "ee_pos": 3, "ee_quat": 4, "gripper": 1},
                            ActionSpec("joint_pos", (-1, 0), (1, 1), 10.0))
    with pytest.raises(TeleopError, match="ee_delta"):
        TeleopPolicy(joints, TerminalKeyboard(terminal[1]))
    with pytest.raises(TeleopError, match="no SpaceMouse found"):  # nothing is created before the device works
        teleop_main(REACH, str(tmp_path / "never"), 1, "spacemouse", terminal=terminal[1], cameras=())
    assert not (tmp_path / "never").exists()
    assert "Backspace" in KEY_HELP


PYNPUT_SESSION = r'''
import time
from pynput.keyboard import Controller, Key
from hardware.teleop_devices import PynputKeyboard

keyboard = PynputKeyboard()
keyboard.connect()
hands = Controller()  # real X key events (XTest), seen by pynput's listener like a person's
hands.press("w"); time.sleep(0.3); held = keyboard.poll()
time.sleep(0.5); still_held = keyboard.poll()  # no hold timeout: a real release is awaited
hands.release("w"); time.sleep(0.2); released = keyboard.poll()
for key in (Key.space, Key.enter):
    hands.press(key); time.sleep(0.1); hands.release(key)
time.sleep(0.2); commands = keyboard.poll()
keyboard.close()
print(held.translation.tolist(), still_held.translation.tolist(), released.translation.tolist(),
      commands.toggle_gripper, commands.end)
'''


def test_pynput_keyboard_moves_while_a_key_is_down_on_a_virtual_display():
    """pynput needs an X display: a private Xvfb, keys pressed through X itself (in a child process,
    because pynput binds to the display when it is imported)."""
    import shutil
    import subprocess
    import sys

    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt install xvfb)")
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", "1", "-nolisten", "tcp"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    try:
        display = xvfb.stdout.readline().decode().strip()
        assert display.isdigit(), "Xvfb did not report a display"
        run = subprocess.run([sys.executable, "-c", PYNPUT_SESSION], env=dict(os.environ, DISPLAY=f":{display}"),
                             capture_output=True, text=True, timeout=60, check=False)
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=10)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[0] == "[1.0, 0.0, 0.0] [1.0, 0.0, 0.0] [0.0, 0.0, 0.0] 1 success"
