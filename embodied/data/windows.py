"""Training windows: a short history of observations and a chunk of future actions.

For frame t of an episode of T frames, a window holds

- ``observation.state``: (obs_horizon, S) float32, frames t-obs_horizon+1 .. t
- ``observation.images.<cam>``: (obs_horizon, H, W, 3) uint8, the same frames
- from an episode with depth: ``observation.depth.<cam>`` (obs_horizon, H, W) float32
  metres, ``observation.intrinsics.<cam>`` (obs_horizon, 3, 3) and
  ``observation.extrinsics.<cam>`` (obs_horizon, 4, 4), the same frames
- ``obs_mask``: (obs_horizon,) bool, False where a frame before 0 was padded
- ``action``: (action_horizon, D) float32, actions t .. t+action_horizon-1
- ``action_mask``: (action_horizon,) bool, False where an action past T-1 was padded
- ``task``, ``language_motion``, ``subtask`` (str, at frame t), ``episode_index``, ``frame_index``
- with future_offset k: ``future.state`` (S,) and ``future.images.<cam>`` (H, W, 3)
  at frame min(t + k, T-1), e.g. the frame a predictive auxiliary loss reconstructs.
- with goal_frame=True: ``goal.state`` (S,) and ``goal.images.<cam>`` (H, W, 3) at the
  episode's last frame T-1, the image goal of goal-conditioned policies (MDT, GRIF).

Padding repeats the edge frame (the first observation, the last action), so
padded values are plausible and the masks say which ones to ignore in a loss.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from embodied.data import format as fmt

if TYPE_CHECKING:
    from embodied.data.reader import Dataset, Episode


def make_window(ep: Episode, state: np.ndarray, t: int, obs_horizon: int, action_horizon: int,
                future_offset: int | None, *, goal_frame: bool = False) -> dict[str, Any]:
    """The window at frame t of `ep`; state is the episode's flat (T, S) state."""
    T = len(ep)
    obs_idx = np.arange(t - obs_horizon + 1, t + 1)
    act_idx = np.arange(t, t + action_horizon)
    obs_clip, act_clip = np.clip(obs_idx, 0, T - 1), np.clip(act_idx, 0, T - 1)
    w: dict[str, Any] = {
        fmt.STATE: state[obs_clip],
        **{fmt.video_key(cam): frames[obs_clip] for cam, frames in ep.images.items()},
        "obs_mask": obs_idx >= 0,
        fmt.ACTION: ep.actions[act_clip],
        "action_mask": act_idx < T,
        "task": ep.task,
        "language_motion": ep.language_motion[t],
        "subtask": ep.subtask[t],
        "episode_index": ep.index,
        "frame_index": t,
    }
    for cam, depth in ep.depth.items():
        k, e = ep.cameras[cam]
        w[fmt.depth_key(cam)] = np.asarray(depth[obs_clip], np.float32)
        w[fmt.intrinsics_key(cam)], w[fmt.extrinsics_key(cam)] = k[obs_clip], e[obs_clip]
    if future_offset is not None:
        f = min(t + future_offset, T - 1)
        w["future.state"] = state[f]
        w |= {"future.images." + cam: frames[f] for cam, frames in ep.images.items()}
    if goal_frame:
        w["goal.state"] = state[T - 1]
        w |= {"goal.images." + cam: frames[T - 1] for cam, frames in ep.images.items()}
    return w


def iter_windows(ds: Dataset, obs_horizon: int = 1, action_horizon: int = 1, *,
                 cameras: Sequence[str] | None = None, future_offset: int | None = None,
                 episodes: Sequence[int] | None = None, goal_frame: bool = False) -> Iterator[dict[str, Any]]:
    """One window per frame of each chosen episode (default all), episode by episode, each decoded once.

    Arguments are checked here, before the first window is asked for.
    """
    if obs_horizon < 1 or action_horizon < 1:
        raise ValueError(f"horizons must be >= 1, got obs_horizon={obs_horizon}, action_horizon={action_horizon}")
    if future_offset is not None and future_offset < 0:
        raise ValueError(f"future_offset must be >= 0 (frames ahead), got {future_offset}")
    for cam in cameras or ():
        ds.spec.camera(cam)  # KeyError naming the cameras there are
    chosen = list(range(ds.num_episodes) if episodes is None else episodes)
    for i in chosen:
        if not 0 <= i < ds.num_episodes:
            raise IndexError(f"episode {i} out of range: {ds.root} has {ds.num_episodes} episodes")

    def generate() -> Iterator[dict[str, Any]]:
        for i in chosen:
            ep = ds.episode(i, cameras)
            state = np.concatenate([ep.state[k] for k in ds.spec.state], axis=1)
            for t in range(len(ep)):
                yield make_window(ep, state, t, obs_horizon, action_horizon, future_offset, goal_frame=goal_frame)

    return generate()
