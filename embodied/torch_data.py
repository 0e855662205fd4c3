"""Datasets on disk -> a torch map-style dataset of training windows, a resumable sampler, a collate.

    data = WindowDataset([open_dataset("data/pick")], obs_horizon=1, action_horizon=10, cameras=("front",))
    sampler = ShardedBatchSampler(len(data), batch_size=32, seed=0, rank=0, world_size=1, start=0, stop=1000)
    loader = DataLoader(data, batch_sampler=sampler, collate_fn=collate, num_workers=2)

Every episode is decoded once, when the `WindowDataset` is built: its frames
go into one uint8 array per camera, (N, H, W, 3) over all N frames of all
datasets, kept in memory or, with `cache_dir`, in a memory-mapped .npy file
that DataLoader workers share through the page cache instead of copying.
With depth=True the depth images of the cameras whose spec has depth are
kept the same way, (N, H, W) float16 metres (half a millimetre's precision at
one metre), and each window carries them with the camera calibration.

Sample i is the window at frame t of episode e (windows.make_window), in the
order datasets -> episodes -> frames; `dataset_index` is added so windows of
mixed datasets stay traceable. A scene dataset's windows (one recorded with
demonstrations=False) have an all-False `action_mask`: policies learn
perception from them, never their actions.

The sampler makes the data order a pure function of (seed, position): one
endless stream of per-epoch permutations, cut into global batches of
batch_size * world_size, rank r taking its own slice of each. Resuming at
global batch k is just `start=k`, with nothing else to restore.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embodied.data import format as fmt
from embodied.data.reader import Dataset, Episode
from embodied.data.windows import make_window

CACHE_FORMAT = 1


class WindowDataset(torch.utils.data.Dataset):
    """Training windows over one or more datasets of the same embodiment, frames decoded once.

    datasets: opened datasets (their specs must agree on the cameras, state and
    action used). obs_horizon/action_horizon/future_offset: see
    embodied.data.windows. cameras: which cameras to decode (default: all of
    the first dataset's). cache_dir: where to keep memory-mapped frames; None
    keeps them in RAM. progress: show a bar while the frames are decoded
    (minutes for thousands of episodes). depth: also give each window the
    depth images and calibration of the chosen cameras that have depth (see
    embodied.data.windows); every dataset must have been recorded with depth.
    """

    def __init__(self, datasets: Sequence[Dataset], obs_horizon: int = 1, action_horizon: int = 1, *,
                 cameras: Sequence[str] | None = None, future_offset: int | None = None,
                 cache_dir: str | Path | None = None, progress: bool = False, depth: bool = False):
        if not datasets:
            raise ValueError("WindowDataset needs at least one dataset")
        if obs_horizon < 1 or action_horizon < 1:
            raise ValueError(f"horizons must be >= 1, got obs_horizon={obs_horizon}, action_horizon={action_horizon}")
        if future_offset is not None and future_offset < 0:
            raise ValueError(f"future_offset must be >= 0 (frames ahead), got {future_offset}")
        self.spec = datasets[0].spec
        self.cameras = tuple(self.spec.camera_names if cameras is None else cameras)
        for ds in datasets:
            for cam in self.cameras:
                ds.spec.camera(cam)  # KeyError naming the cameras the dataset has
            _check_same_layout(datasets[0], ds, self.cameras)
        self.depth_cameras = tuple(c for c in self.cameras if self.spec.camera(c).depth) if depth else ()
        if depth and not self.depth_cameras:
            raise ValueError(f"depth=True, but none of the cameras {list(self.cameras)} has depth in the spec")
        for ds in datasets:
            lacking = [c for c in self.depth_cameras if c not in ds.depth_cameras]
            if lacking:
                raise ValueError(f"{ds.root} was recorded without the depth of cameras {lacking}, which this "
                                 "training reads (a policy that lifts image points to 3-D); collect it again with "
                                 "depth (CollectConfig(depth=True), `embodied collect --depth`)")
        self.obs_horizon, self.action_horizon, self.future_offset = obs_horizon, action_horizon, future_offset
        self.roots = [str(ds.root) for ds in datasets]

        # (dataset, episode, length) per episode, and where each episode starts in the flat arrays.
        self._episodes = [(d, e, n) for d, ds in enumerate(datasets) for e, n in enumerate(ds.episode_lengths)]
        lengths = np.array([n for _, _, n in self._episodes], np.int64)
        if lengths.sum() == 0:
            raise ValueError(f"the datasets {self.roots} hold no frames; collect some episodes first")
        self._starts = np.concatenate([[0], np.cumsum(lengths)])
        self._demonstrations = [ds.demonstrations for ds in datasets]
        if not any(self._demonstrations):
            raise ValueError(f"the datasets {self.roots} are all scene datasets (no demonstrations to imitate); "
                             "add at least one dataset of demonstrations")
        frames = _FrameStore.build(datasets, self._episodes, self.cameras, self.depth_cameras, int(lengths.sum()),
                                   cache_dir, progress)
        self._views = self._episode_views(datasets, frames)

    def _episode_views(self, datasets: Sequence[Dataset], frames: dict[str, np.ndarray]) -> list[tuple[Episode, np.ndarray]]:
        """Per episode: an Episode whose images (and depth) are slices of the shared frame arrays, and its flat
        (T, S) state."""
        views = []
        for k, (d, e, _) in enumerate(self._episodes):
            ds = datasets[d]
            ep = ds.episode(e, cameras=())  # low-dimensional data only; the frames come from the store
            a, b = self._starts[k], self._starts[k + 1]
            ep.images = {cam: frames[cam][a:b] for cam in self.cameras}
            ep.depth = {cam: frames[fmt.depth_key(cam)][a:b] for cam in self.depth_cameras}
            ep.cameras = {cam: ep.cameras[cam] for cam in self.depth_cameras}
            state = np.concatenate([ep.state[key] for key in ds.spec.state], axis=1)
            views.append((ep, state))
        return views

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def demonstrated(self) -> np.ndarray:
        """(N,) bool per sample: True where its dataset holds demonstrations, False for a scene dataset's."""
        per_episode = np.array([self._demonstrations[d] for d, _, _ in self._episodes])
        return np.repeat(per_episode, np.diff(self._starts))

    def locate(self, i: int) -> tuple[int, int, int]:
        """Sample i -> (dataset index, episode index within it, frame t)."""
        if not 0 <= i < len(self):
            raise IndexError(f"sample {i} out of range: {len(self)} windows")
        k = int(np.searchsorted(self._starts, i, side="right") - 1)
        d, e, _ = self._episodes[k]
        return d, e, i - int(self._starts[k])

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self):
            raise IndexError(f"sample {i} out of range: {len(self)} windows")
        k = int(np.searchsorted(self._starts, i, side="right") - 1)
        ep, state = self._views[k]
        w = make_window(ep, state, i - int(self._starts[k]), self.obs_horizon, self.action_horizon,
                        self.future_offset)
        w["dataset_index"] = d = self._episodes[k][0]
        if not self._demonstrations[d]:  # a scene's actions only moved the robot: nothing to imitate
            w["action_mask"] = np.zeros_like(w["action_mask"])
        w["sample_index"] = i
        return w


def _check_same_layout(a: Dataset, b: Dataset, cameras: Sequence[str]) -> None:
    """Datasets mixed in one run must produce windows of the same shapes and meaning."""
    sa, sb = a.spec, b.spec
    problems = []
    if list(sa.state.items()) != list(sb.state.items()):
        problems.append(f"state keys {dict(sb.state)} vs {dict(sa.state)}")
    if (sa.action.mode, sa.action.dim, sa.action.rate_hz) != (sb.action.mode, sb.action.dim, sb.action.rate_hz):
        problems.append(f"action {sb.action.mode}/{sb.action.dim}-D at {sb.action.rate_hz} Hz vs "
                        f"{sa.action.mode}/{sa.action.dim}-D at {sa.action.rate_hz} Hz")
    for cam in cameras:
        ca, cb = sa.camera(cam), sb.camera(cam)
        if (ca.height, ca.width) != (cb.height, cb.width):
            problems.append(f"camera {cam!r} is {cb.height}x{cb.width} vs {ca.height}x{ca.width}")
    if problems:
        raise ValueError(f"cannot mix {b.root} with {a.root}: " + "; ".join(problems)
                         + ". Train on datasets recorded with the same embodiment spec.")


class _FrameStore:
    """Decoded frames of every episode: one (N, H, W, 3) uint8 array per camera, keyed by its name, and
    one (N, H, W) float16 array of metres per depth camera, keyed by `format.depth_key`."""

    @staticmethod
    def build(datasets: Sequence[Dataset], episodes: Sequence[tuple[int, int, int]], cameras: Sequence[str],
              depth_cameras: Sequence[str], total: int, cache_dir: str | Path | None, progress: bool = False
              ) -> dict[str, np.ndarray]:
        spec = datasets[0].spec
        size = {cam: (spec.camera(cam).height, spec.camera(cam).width) for cam in cameras}
        layout = {cam: ((total, *size[cam], 3), np.uint8) for cam in cameras}
        layout |= {fmt.depth_key(cam): ((total, *size[cam]), np.float16) for cam in depth_cameras}
        if cache_dir is None:
            arrays = {name: np.empty(shape, dtype) for name, (shape, dtype) in layout.items()}
            _decode_into(arrays, datasets, episodes, cameras, depth_cameras, progress)
            return arrays
        cache_dir = Path(cache_dir)
        key = _cache_key(datasets, cameras) | ({"depth": list(depth_cameras)} if depth_cameras else {})
        marker = cache_dir / "frames.json"
        files = {name: cache_dir / f"frames.{name}.npy" for name in layout}
        if not (marker.is_file() and json.loads(marker.read_text()) == key and all(f.is_file() for f in files.values())):
            cache_dir.mkdir(parents=True, exist_ok=True)
            marker.unlink(missing_ok=True)  # the marker is written last: its presence means the files are whole
            arrays = {name: np.lib.format.open_memmap(files[name], "w+", dtype, shape)
                      for name, (shape, dtype) in layout.items()}
            _decode_into(arrays, datasets, episodes, cameras, depth_cameras, progress)
            for a in arrays.values():
                a.flush()
            del arrays
            tmp = marker.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(key))
            tmp.replace(marker)
        arrays = {name: np.load(files[name], mmap_mode="r") for name in layout}
        for name, a in arrays.items():
            if a.shape != layout[name][0]:
                raise ValueError(f"{files[name]} holds frames of shape {a.shape}, expected {layout[name][0]}; "
                                 f"delete {cache_dir} and train again")
        return arrays


def _decode_into(arrays: dict[str, np.ndarray], datasets: Sequence[Dataset], episodes: Sequence[tuple[int, int, int]],
                 cameras: Sequence[str], depth_cameras: Sequence[str], progress: bool) -> None:
    from tqdm.auto import tqdm

    pos = 0
    for d, e, n in tqdm(episodes, desc="decoding frames", unit="ep", disable=not progress):
        ep = datasets[d].episode(e, cameras)
        for cam in cameras:
            arrays[cam][pos:pos + n] = ep.images[cam]
        for cam in depth_cameras:
            arrays[fmt.depth_key(cam)][pos:pos + n] = ep.depth[cam]
        pos += n


def _cache_key(datasets: Sequence[Dataset], cameras: Sequence[str]) -> dict[str, Any]:
    """What the cached frames were decoded from: roots, episode lengths and info.json digests."""
    return {
        "format": CACHE_FORMAT,
        "cameras": list(cameras),
        "datasets": [{"root": str(Path(ds.root).resolve()), "lengths": ds.episode_lengths,
                      "info_sha256": hashlib.sha256(json.dumps(ds.info, sort_keys=True).encode()).hexdigest()}
                     for ds in datasets],
    }


@dataclasses.dataclass
class ShardedBatchSampler(torch.utils.data.Sampler):
    """Per-rank batches of sample indices for global batches start .. stop-1, a pure function of the seed.

    The stream is perm(epoch 0) ++ perm(epoch 1) ++ ... over num_samples
    indices; global batch k is stream[k*B*W : (k+1)*B*W] with B = batch_size,
    W = world_size, and rank r gets its r-th slice of B. Ranks never share a
    sample within one global batch (while B*W <= num_samples).

    With `pools` (disjoint arrays of sample indices) and `pool_batch` (how
    many of each rank batch come from each pool, summing to batch_size), each
    pool has its own such stream, cut into slices of its own size: a batch's
    mixture is fixed whatever the pools' sizes (Octo's dataset sample weights,
    made exact per batch).
    """

    num_samples: int
    batch_size: int
    seed: int
    rank: int = 0
    world_size: int = 1
    start: int = 0
    stop: int = 0
    pools: tuple[np.ndarray, ...] = ()
    pool_batch: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.num_samples < 1 or self.batch_size < 1:
            raise ValueError(f"need num_samples >= 1 and batch_size >= 1, got {self.num_samples}, {self.batch_size}")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is outside world_size {self.world_size}")
        if len(self.pools) != len(self.pool_batch) or (self.pools and sum(self.pool_batch) != self.batch_size):
            raise ValueError(f"pool_batch {self.pool_batch} must give one count per pool ({len(self.pools)}) "
                             f"summing to batch_size={self.batch_size}")
        if any(len(p) == 0 for p, n in zip(self.pools, self.pool_batch, strict=True) if n > 0):
            raise ValueError("a pool that batches draw from is empty")
        self._perm_cache: dict[tuple[int, int], np.ndarray] = {}

    def permutation(self, epoch: int, pool: int | None = None) -> np.ndarray:
        """The epoch's order of all samples, or of the pool's positions."""
        key = (-1 if pool is None else pool, epoch)
        if key not in self._perm_cache:
            n, seed = (self.num_samples, [self.seed, epoch]) if pool is None else \
                (len(self.pools[pool]), [self.seed, pool, epoch])
            self._perm_cache = {k: v for k, v in self._perm_cache.items() if k[0] != key[0]}
            self._perm_cache[key] = np.random.default_rng(seed).permutation(n)
        return self._perm_cache[key]

    def batch(self, k: int) -> list[int]:
        """Rank's sample indices of global batch k."""
        if not self.pools:
            return self._slice(k, self.batch_size, self.num_samples, None)
        out = []
        for p, n in enumerate(self.pool_batch):
            out += [int(self.pools[p][j]) for j in self._slice(k, n, len(self.pools[p]), p)]
        return out

    def _slice(self, k: int, size: int, total: int, pool: int | None) -> list[int]:
        first = (k * self.world_size + self.rank) * size
        out = []
        for pos in range(first, first + size):
            epoch, j = divmod(pos, total)
            out.append(int(self.permutation(epoch, pool)[j]))
        return out

    def __iter__(self) -> Iterator[list[int]]:
        for k in range(self.start, self.stop):
            yield self.batch(k)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def scene_pools(demonstrated: np.ndarray, batch_size: int, scene_share: float) -> tuple[tuple[np.ndarray, ...],
                                                                                         tuple[int, ...]]:
    """(pools, pool_batch) for ShardedBatchSampler: round(batch_size * scene_share) samples of each batch
    from the scene datasets' samples, the rest from the demonstrations'. demonstrated: (N,) bool."""
    if not 0 <= scene_share < 1:
        raise ValueError(f"scene_share must be in [0, 1): the share of each batch from scene datasets, and "
                         f"every batch needs demonstrations; got {scene_share}")
    scenes = round(batch_size * scene_share)
    if scenes == batch_size:
        raise ValueError(f"scene_share={scene_share} leaves no demonstration in a batch of {batch_size}; lower it")
    if not (~demonstrated).any():
        raise ValueError("scene_share is set but no dataset is a scene dataset; add one (embodied collect "
                         "--scenes-only), or leave scene_share unset")
    return (np.flatnonzero(demonstrated), np.flatnonzero(~demonstrated)), (batch_size - scenes, scenes)


def collate(windows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Windows -> a batch: arrays stacked into tensors (B, ...) keeping dtypes (uint8 images, bool masks);
    strings become list[str], ints an int64 tensor (B,)."""
    out: dict[str, Any] = {}
    for key, first in windows[0].items():
        values = [w[key] for w in windows]
        if isinstance(first, str):
            out[key] = values
        elif isinstance(first, np.ndarray):
            out[key] = torch.from_numpy(np.stack(values))
        elif isinstance(first, (bool, np.bool_)):
            out[key] = torch.tensor(values, dtype=torch.bool)
        elif isinstance(first, (int, np.integer)):
            out[key] = torch.tensor(values, dtype=torch.int64)
        elif isinstance(first, (float, np.floating)):
            out[key] = torch.tensor(values, dtype=torch.float32)
        else:
            raise TypeError(f"cannot collate window field {key!r} of type {type(first).__name__}")
    return out


def to_device(batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    """Move a batch's tensors to `device` (strings and lists stay as they are)."""
    non_blocking = torch.device(device).type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v for k, v in batch.items()}


def merged_stats(datasets: Sequence[Dataset]) -> dict[str, dict[str, np.ndarray]]:
    """Normalisation statistics over the union of several datasets ({feature: {stat: array}}).

    Action statistics come from the demonstration datasets only: a scene dataset's actions are not
    imitated, so they must not stretch the range the policy's outputs are normalised to.
    """
    from embodied.data.format import ACTION
    from embodied.data.stats import aggregate

    if len(datasets) == 1:
        return datasets[0].stats
    features = set(datasets[0].stats)
    for ds in datasets[1:]:
        features &= set(ds.stats)
    demos = [ds for ds in datasets if ds.demonstrations] or list(datasets)
    return {f: aggregate([ds.stats[f] for ds in (demos if f == ACTION else datasets)]) for f in sorted(features)}


