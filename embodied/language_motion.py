"""RT-H language motions, labelled automatically from end-effector deltas.

A language motion is a short phrase such as ``"move arm forward"``,
``"rotate arm left"`` or ``"move arm forward and down and close gripper"``
that says what the arm does over the next moment. RT-H predicts it from
(image, task) and then the action from (image, task, motion); a person can
correct a robot by giving one ("move arm left").

How a 7-D `ee_delta` action (dx, dy, dz m; drx, dry, drz rad; gripper
opening 0..1) becomes words:

1. Smoothing: the motion at step t is the mean of the actions t .. t+w-1
   (``window``, default 3 ticks) so a label does not flicker between ticks.
2. Threshold: a dimension counts only if its magnitude is at least its
   threshold. Default thresholds are a fraction (``DEFAULT_FRACTION`` = 0.3)
   of the spec's per-tick bound: with the tabletop's 0.03 m/tick bound at
   10 Hz, motion under 9 mm per tick (9 cm/s) on an axis is not named.
   `thresholds_from_std` offers the alternative the RT-H paper suggests:
   k times each dimension's standard deviation over a dataset.
3. Words per dimension (base frame, +x forward, +y left, +z up):
   x: forward/backward; y: left/right; z: up/down;
   rz (yaw, counter-clockwise seen from above is positive): rotate arm
   left/right; ry (positive dips the forward axis down): tilt arm down/up;
   rx (positive raises the left side): roll arm right/left.
   Gripper: "close gripper"/"open gripper" when the commanded opening differs
   from the current opening by more than ``gripper_threshold`` (0.5).
4. Order: parts are sorted by magnitude relative to their threshold, largest
   first; all translation words share one "move arm ..." group placed where
   its largest member ranks. Parts are joined with " and ".
5. Nothing above threshold: ``"stop"``.

Worked example: action (0.02, -0.012, 0, 0, 0, 0.1, 0.0) with open gripper
(1.0) and bounds 0.03 m / 0.2 rad: |dx|/0.009 = 2.2, |dy|/0.009 = 1.3,
|drz|/0.06 = 1.7, gripper change 1.0 -> 0.0 counts as magnitude 1.0/0.5 = 2.
Ranked: forward 2.2, gripper 2.0, rotate 1.7, right 1.3 ->
``"move arm forward and right and close gripper and rotate arm left"``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from embodied.types import ActionSpec

DEFAULT_FRACTION = 0.3
DEFAULT_WINDOW = 3
STOP = "stop"

# (positive word, negative word) per ee_delta dimension.
_TRANSLATION_WORDS = (("forward", "backward"), ("left", "right"), ("up", "down"))
_ROTATION_PHRASES = (
    ("roll arm right", "roll arm left"),
    ("tilt arm down", "tilt arm up"),
    ("rotate arm left", "rotate arm right"),
)


@dataclasses.dataclass(frozen=True)
class MotionThresholds:
    """Per-dimension magnitudes below which a dimension is not named.

    translation: (3,) metres per tick; rotation: (3,) radians per tick;
    gripper: change in opening (0..1) that counts as open/close.
    """

    translation: tuple[float, float, float]
    rotation: tuple[float, float, float]
    gripper: float = 0.5

    @classmethod
    def from_spec(cls, spec: ActionSpec, fraction: float = DEFAULT_FRACTION) -> MotionThresholds:
        if spec.mode != "ee_delta":
            raise ValueError(f"language motions are defined on ee_delta actions, not {spec.mode!r}")
        high = spec.high_array
        return cls(tuple(fraction * high[:3]), tuple(fraction * high[3:6]))


def thresholds_from_std(actions: np.ndarray, k: float = 0.5, gripper: float = 0.5) -> MotionThresholds:
    """Thresholds of k standard deviations per dimension over a dataset's actions (N, 7)."""
    std = np.asarray(actions, np.float64)[:, :6].std(axis=0)
    std = np.maximum(std, 1e-9)
    return MotionThresholds(tuple(k * std[:3]), tuple(k * std[3:6]), gripper)


def describe_motion(delta: np.ndarray, gripper_now: float, thresholds: MotionThresholds) -> str:
    """Words for one (smoothed) 7-D ee_delta action, given the current gripper opening."""
    delta = np.asarray(delta, np.float64)
    if delta.shape != (7,):
        raise ValueError(f"expected a 7-D ee_delta action, got shape {delta.shape}")
    parts: list[tuple[float, str, str]] = []  # (relative magnitude, group, words)
    # A zero threshold means the embodiment cannot move on that axis (e.g. Meta-World's hand does
    # not rotate): such an axis is never named.
    for i, (pos, neg) in enumerate(_TRANSLATION_WORDS):
        if thresholds.translation[i] <= 0:
            continue
        rel = abs(delta[i]) / thresholds.translation[i]
        if rel >= 1.0:
            parts.append((rel, "move", pos if delta[i] > 0 else neg))
    for i, (pos, neg) in enumerate(_ROTATION_PHRASES):
        if thresholds.rotation[i] <= 0:
            continue
        rel = abs(delta[3 + i]) / thresholds.rotation[i]
        if rel >= 1.0:
            parts.append((rel, "other", pos if delta[3 + i] > 0 else neg))
    change = float(delta[6]) - float(gripper_now)
    if abs(change) > thresholds.gripper:
        parts.append((abs(change) / thresholds.gripper, "other", "open gripper" if change > 0 else "close gripper"))
    if not parts:
        return STOP
    parts.sort(key=lambda p: -p[0])
    phrases: list[str] = []
    move_words = [w for _, g, w in parts if g == "move"]
    for _, group, words in parts:
        if group == "move":
            if move_words:
                phrases.append("move arm " + " and ".join(move_words))
                move_words = []
        else:
            phrases.append(words)
    return " and ".join(phrases)


def label_trajectory(
    actions: np.ndarray,
    gripper_state: np.ndarray,
    thresholds: MotionThresholds,
    window: int = DEFAULT_WINDOW,
) -> list[str]:
    """Language motion for every step of an episode.

    actions: (T, 7) ee_delta actions as executed; gripper_state: (T,) the
    gripper opening observed at each step (before the action). Returns T labels.
    """
    actions = np.asarray(actions, np.float64)
    gripper_state = np.asarray(gripper_state, np.float64).reshape(-1)
    if actions.ndim != 2 or actions.shape[1] != 7:
        raise ValueError(f"expected actions of shape (T, 7), got {actions.shape}")
    if gripper_state.shape[0] != actions.shape[0]:
        raise ValueError(f"{actions.shape[0]} actions but {gripper_state.shape[0]} gripper states")
    if window < 1:
        raise ValueError("window must be at least 1 tick")
    labels = []
    for t in range(actions.shape[0]):
        smooth = actions[t : t + window].mean(axis=0)
        # The gripper is a command, not a velocity: judge it on this step alone.
        smooth[6] = actions[t, 6]
        labels.append(describe_motion(smooth, gripper_state[t], thresholds))
    return labels


class MotionLabeller:
    """Online labeller for the runner: labels step t once action t+window-1 is known.

    `push(action, gripper)` returns the labels that became final; `flush()`
    returns the rest at episode end. Together they equal `label_trajectory`.
    """

    def __init__(self, thresholds: MotionThresholds, window: int = DEFAULT_WINDOW):
        self.thresholds, self.window = thresholds, window
        self._actions: list[np.ndarray] = []
        self._grip: list[float] = []
        self._done = 0

    def reset(self) -> None:
        self._actions, self._grip, self._done = [], [], 0

    def push(self, action: np.ndarray, gripper_now: float) -> list[str]:
        self._actions.append(np.asarray(action, np.float64))
        self._grip.append(float(gripper_now))
        ready = len(self._actions) - self.window + 1
        return self._emit(ready)

    def flush(self) -> list[str]:
        return self._emit(len(self._actions))

    def _emit(self, upto: int) -> list[str]:
        out = []
        while self._done < upto:
            t = self._done
            smooth = np.mean(self._actions[t : t + self.window], axis=0)
            smooth[6] = self._actions[t][6]
            out.append(describe_motion(smooth, self._grip[t], self.thresholds))
            self._done += 1
        return out
