"""Operator input devices for teleoperation: a terminal keyboard, a desktop keyboard (pynput), a SpaceMouse.

Each device has `connect()`, `poll() -> TeleopInput` (never blocks) and
`close()`. A `TeleopInput` is device-neutral: motion as fractions of full
speed along the robot's base axes (x forward, y left, z up; rotations about
those axes, right-handed), plus discrete commands. `hardware.teleop` turns
it into actions.

Keys (both keyboards; `KEY_HELP` is what the operator is shown):

    w / s   +x / -x  forward / back        j / l   roll  + / -  (about x)
    a / d   +y / -y  left / right          i / k   pitch + / -  (about y)
    r / f   +z / -z  up / down             q / e   yaw   + / -  (about z, + = counter-clockwise from above)
    space   open / close the gripper       + / -   faster / slower
    Enter   end the episode: success       Backspace or x: end the episode: failure

A terminal sends no key-release events, only the key again while it is held
(auto-repeat: a first repeat after ~0.25-0.6 s, then ~30 per second). So a
key moves the arm for `hold_s` after each byte that arrives: a tap nudges
the arm for about one tick, a held key moves it steadily once auto-repeat
starts, and letting go stops it within `hold_s`. pynput sees real presses and
releases, so there a key moves the arm exactly while it is down.
"""

from __future__ import annotations

import dataclasses
import os
import re
import select
import termios
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

# key -> (motion axis 0..5 = x, y, z, rx, ry, rz; sign)
MOTION_KEYS: dict[str, tuple[int, int]] = {
    "w": (0, +1), "s": (0, -1),
    "a": (1, +1), "d": (1, -1),
    "r": (2, +1), "f": (2, -1),
    "j": (3, +1), "l": (3, -1),
    "i": (4, +1), "k": (4, -1),
    "q": (5, +1), "e": (5, -1),
}
GRIPPER_KEYS = (" ",)
SUCCESS_KEYS = ("\r", "\n")
FAILURE_KEYS = ("\x7f", "\x08", "x")
FASTER_KEYS, SLOWER_KEYS = ("+", "="), ("-", "_")

KEY_HELP = """\
keys:  w/s forward/back   a/d left/right   r/f up/down
       q/e yaw   i/k pitch   j/l roll   +/- faster/slower
       space open/close gripper
       Enter end episode (success)   Backspace or x end episode (failure)   Ctrl-C quit"""

# Arrow and function keys arrive as escape sequences; they mean nothing here and must not leak letters.
_ESCAPE_SEQUENCE = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|O.|.)?", re.DOTALL)


class TeleopError(RuntimeError):
    """A teleoperation device cannot be used; the message says what to do instead."""


@dataclasses.dataclass
class TeleopInput:
    """One poll of an operator's device.

    translation, rotation: (3,) fractions of full speed in [-1, 1] along / about
    the base axes (x forward, y left, z up). toggle_gripper: gripper presses
    since the last poll. end: "success" / "failure" when the operator ended
    the episode, else None. speed_steps: net faster (+) / slower (-) presses.
    """

    translation: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(3))
    rotation: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(3))
    toggle_gripper: int = 0
    end: str | None = None
    speed_steps: int = 0

    @property
    def moving(self) -> bool:
        return bool(np.any(self.translation) or np.any(self.rotation))


class TeleopDevice(Protocol):
    def connect(self) -> None: ...

    def poll(self) -> TeleopInput: ...

    def close(self) -> None: ...


class KeyState:
    """Motion keys held (with a hold time, or until released) and commands pressed since the last poll.

    hold_s: how long a press counts as held without a release event (terminal);
    None: until `release` (pynput). Thread-safe: pynput calls from its own thread.
    """

    def __init__(self, hold_s: float | None, clock: Callable[[], float] = time.monotonic):
        self.hold_s, self.clock = hold_s, clock
        self._pressed: dict[str, float] = {}
        self._pending = TeleopInput()
        self._lock = threading.Lock()

    def press(self, key: str) -> None:
        with self._lock:
            if key in MOTION_KEYS:
                self._pressed[key] = self.clock()
            elif key in GRIPPER_KEYS:
                self._pending.toggle_gripper += 1
            elif key in SUCCESS_KEYS and self._pending.end is None:
                self._pending.end = "success"
            elif key in FAILURE_KEYS and self._pending.end is None:
                self._pending.end = "failure"
            elif key in FASTER_KEYS:
                self._pending.speed_steps += 1
            elif key in SLOWER_KEYS:
                self._pending.speed_steps -= 1

    def release(self, key: str) -> None:
        with self._lock:
            self._pressed.pop(key, None)

    def poll(self) -> TeleopInput:
        """Motion of the keys held now (opposite keys cancel) and the commands since the last poll."""
        now = self.clock()
        motion = np.zeros(6)
        with self._lock:
            for key, t in list(self._pressed.items()):
                if self.hold_s is not None and now - t > self.hold_s:
                    del self._pressed[key]
                    continue
                axis, sign = MOTION_KEYS[key]
                motion[axis] += sign
            out, self._pending = self._pending, TeleopInput()
        motion = np.clip(motion, -1.0, 1.0)
        out.translation, out.rotation = motion[:3], motion[3:]
        return out


class TerminalKeyboard:
    """Keys from a terminal: cbreak mode (no line buffering, no echo; Ctrl-C still interrupts), non-blocking reads.

    fd: the terminal's file descriptor (default: stdin). hold_s: see the module docstring;
    0.15 s bridges auto-repeat's ~33 ms gaps with margin and stops the arm about a tick after release.
    """

    def __init__(self, fd: int | None = None, hold_s: float = 0.15):
        self.fd = 0 if fd is None else fd
        self.keys = KeyState(hold_s)
        self._saved: list[Any] | None = None

    def connect(self) -> None:
        if not os.isatty(self.fd):
            raise TeleopError("keyboard teleoperation reads keys from a terminal, and this input is not one: run it "
                              "in a terminal (not through a pipe or a notebook), or use --device pynput / spacemouse")
        self._saved = termios.tcgetattr(self.fd)
        mode = termios.tcgetattr(self.fd)
        mode[3] &= ~(termios.ICANON | termios.ECHO)  # lflags: key by key, nothing echoed over the status lines
        mode[6][termios.VMIN], mode[6][termios.VTIME] = 0, 0
        termios.tcsetattr(self.fd, termios.TCSANOW, mode)

    def poll(self) -> TeleopInput:
        for key in self._read_keys():
            self.keys.press(key)
        return self.keys.poll()

    def _read_keys(self) -> str:
        data = b""
        while select.select([self.fd], [], [], 0)[0]:
            chunk = os.read(self.fd, 1024)
            if not chunk:
                break
            data += chunk
        return _ESCAPE_SEQUENCE.sub("", data.decode("utf-8", errors="ignore"))

    def close(self) -> None:
        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSANOW, self._saved)
            self._saved = None


class PynputKeyboard:
    """Keys from the desktop session through pynput (needs a display: X11, or uinput as root).

    The robot moves while a key is down; no terminal focus is needed, so beware: keys typed in any window count.
    """

    def __init__(self) -> None:
        self.keys = KeyState(hold_s=None)
        self._listener: Any = None
        self._down: set[str] = set()  # pynput repeats presses of a held key; a command must count once

    def connect(self) -> None:
        try:
            from pynput import keyboard
        except ImportError as e:
            raise TeleopError(f"pynput keyboard unavailable ({str(e).splitlines()[0]}): it needs pip install "
                              "'embodied[teleop]' and a desktop session (DISPLAY); over ssh use --device keyboard"
                              ) from e
        special = {keyboard.Key.space: " ", keyboard.Key.enter: "\r", keyboard.Key.backspace: "\x7f"}

        def name(key: Any) -> str | None:
            return special.get(key) or (getattr(key, "char", None) or "").lower() or None

        def on_press(key: Any) -> None:
            k = name(key)
            if k and k not in self._down:
                self._down.add(k)
                self.keys.press(k)

        def on_release(key: Any) -> None:
            k = name(key)
            if k:
                self._down.discard(k)
                self.keys.release(k)

        self._listener = keyboard.Listener(on_press=on_press, on_release=on_release)
        self._listener.start()
        self._listener.wait()

    def poll(self) -> TeleopInput:
        return self.keys.poll()

    def close(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None


class SpaceMouse:
    """A 3Dconnexion SpaceMouse through pyspacemouse: 6-D motion, button 0 toggles the gripper, button 1 = success.

    Axes (pyspacemouse's right-handed z-up convention: x right, y away from the operator, z up) map to the
    robot base for an operator standing behind the robot, facing +x: base x = cap pushed away, base y = cap
    pushed left, base z = cap pulled up; rotations alike. deadzone: |value| below it counts as 0 (the cap
    never rests at exactly 0).
    """

    def __init__(self, deadzone: float = 0.1):
        self.deadzone = deadzone
        self._device: Any = None
        self._buttons: list[int] = []

    def connect(self) -> None:
        try:
            import pyspacemouse
        except ImportError as e:
            raise TeleopError(f"SpaceMouse support needs pyspacemouse ({e}): pip install 'embodied[teleop]'") from e
        try:
            self._device = pyspacemouse.open(axis_convention=pyspacemouse.AxisConvention.HID_Z_UP)
        except Exception as e:  # pyspacemouse raises RuntimeError / OSError / HID errors alike
            raise TeleopError(f"no SpaceMouse found ({e}): plug it in, install the HID library (apt install "
                              "libhidapi-hidraw0), allow this user to read /dev/hidraw* (udev rule), or use "
                              "--device keyboard") from e

    def poll(self) -> TeleopInput:
        state = self._device.read()
        for _ in range(32):  # drain the reports queued since the last tick; keep the newest
            state = self._device.read()
        return self.to_input(state)

    def to_input(self, state: Any) -> TeleopInput:
        """A pyspacemouse state (x, y, z, roll, pitch, yaw in [-1, 1], buttons) -> TeleopInput in base axes."""
        dz = self.deadzone

        def cut(v: float) -> float:
            return 0.0 if abs(v) < dz else float(np.clip(v, -1.0, 1.0))

        # (right, away, up) -> (x = away, y = -right, z = up), for translation and rotation alike (a proper rotation)
        out = TeleopInput(translation=np.array([cut(state.y), -cut(state.x), cut(state.z)]),
                          rotation=np.array([cut(state.pitch), -cut(state.roll), cut(state.yaw)]))
        buttons = list(state.buttons)
        pressed = [b and not (i < len(self._buttons) and self._buttons[i]) for i, b in enumerate(buttons)]
        self._buttons = buttons
        if len(pressed) > 0 and pressed[0]:
            out.toggle_gripper = 1
        if len(pressed) > 1 and pressed[1]:
            out.end = "success"
        return out

    def close(self) -> None:
        if self._device is not None:
            self._device.close()
            self._device = None


class CombinedDevices:
    """Several devices as one (e.g. a SpaceMouse for motion, the terminal for ending episodes): motions add up."""

    def __init__(self, devices: Sequence[TeleopDevice]):
        self.devices = list(devices)

    def connect(self) -> None:
        for i, d in enumerate(self.devices):
            try:
                d.connect()
            except BaseException:
                for opened in self.devices[:i]:
                    opened.close()
                raise

    def poll(self) -> TeleopInput:
        out = TeleopInput()
        for d in self.devices:
            p = d.poll()
            out.translation = np.clip(out.translation + p.translation, -1, 1)
            out.rotation = np.clip(out.rotation + p.rotation, -1, 1)
            out.toggle_gripper += p.toggle_gripper
            out.speed_steps += p.speed_steps
            out.end = out.end or p.end
        return out

    def close(self) -> None:
        for d in self.devices:
            d.close()


DEVICES = ("keyboard", "pynput", "spacemouse")


def make_device(name: str, terminal: int | None = None) -> TeleopDevice:
    """"keyboard" (the terminal), "pynput" (desktop keyboard) or "spacemouse" (+ the terminal's keys when there is one).

    terminal: the terminal's file descriptor (default stdin).
    """
    if name == "keyboard":
        return TerminalKeyboard(terminal)
    if name == "pynput":
        return PynputKeyboard()
    if name == "spacemouse":
        fd = 0 if terminal is None else terminal
        return CombinedDevices([SpaceMouse(), TerminalKeyboard(fd)]) if os.isatty(fd) else SpaceMouse()
    raise TeleopError(f"unknown teleop device {name!r}; choose one of {DEVICES}")
