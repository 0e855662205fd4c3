"""Does a tabletop policy head for the right thing? The first chunk's direction against the goal's object.

    python bench/heading.py --checkpoint outputs/bench_success/runs/full_b64 --tasks tabletop/reach-v0 \
        --seed0 350 --seeds 30

For each seed the policy predicts its first action chunk from the first
observation; the figure is the cosine between that chunk's summed xy motion
(ee_delta translation) and the xy direction from the hand to the goal's
subject (the privileged `goal_points`: the object to touch, pick or push, the
drawer front). 1 means it heads straight there; a policy that has not found
the object scores about 0. It needs no rollouts, so 30 seeds take seconds,
and it is far less noisy than a success rate on the same seeds. Run on a
policy's own demonstration seeds and on unseen ones, it tells fitting from
generalising. For a policy with a localisation head (MDT's
localisation_weight) it also gives how far from the object that head places
it, beside always guessing the training data's mean position, and for one
with goal heat maps (goal_heatmaps) the median pixel distance from each
camera's map point to the object in that image; for one that lifts those
points through depth (lift_points), how far from the object's centre each
camera's lifted point lands (median and worst, cm), and how often each camera's map points at the named
object rather than another, in scenes where another object shares its colour (only its shape tells them
apart) and in the rest. Last line: JSON with the
mean cosine and the share above 0.9 per task (and the localisation errors
in cm, the pointing errors in px, the lifting errors in cm). `--no-heading` measures a perception
stage, which cannot act.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np

STRAIGHT = 0.9  # cosine above which a chunk counts as heading straight for the object


@contextlib.contextmanager
def _policy_in_env(checkpoint: str, task: str) -> Iterator[tuple[Any, Any]]:
    """(policy, embodiment) for a checkpoint, its env rendered as the policy was trained."""
    from embodied.checkpoint import load_policy
    from embodied.evaluate import checkpoint_spec
    from embodied.sim import make_embodiment

    folder, spec = checkpoint_spec(checkpoint)
    size = (spec.cameras[0].height, spec.cameras[0].width) if spec.cameras else (64, 64)
    env = make_embodiment(task, cameras=spec.camera_names, image_size=size)
    try:
        yield load_policy(folder, expect_spec=env.spec).eval(), env
    finally:
        env.close()


def _first_observations(policy: Any, env: Any, task: str, seeds: Iterable[int]) -> Iterator[tuple[int, Any, dict]]:
    """Per seed: (seed, the first observation, a batch of it under its instruction)."""
    from embodied.batching import histories_to_batch

    for seed in seeds:
        obs = env.reset(seed=seed)
        if "goal_points" not in obs.state:
            raise ValueError(f"{task} gives no goal_points (privileged state); heading is for tabletop tasks")
        yield seed, obs, histories_to_batch([[obs]], policy.spec, policy.cameras, 1, [obs.instruction],
                                            depth=bool(policy.data_requirements().get("depth")))


def heading_cosines(checkpoint: str, task: str, seeds: Iterable[int]) -> list[float]:
    """Per seed: cosine between the first chunk's xy motion and the xy direction from the hand to the subject."""
    import torch

    with _policy_in_env(checkpoint, task) as (policy, env):
        if policy.spec.action.mode != "ee_delta":
            raise ValueError(f"heading needs ee_delta actions (a translation per tick); {checkpoint} acts in "
                             f"{policy.spec.action.mode}")
        out = []
        for seed, obs, batch in _first_observations(policy, env, task, seeds):
            to = (obs.state["goal_points"][:3] - obs.state["ee_pos"])[:2]
            torch.manual_seed(seed)  # a diffusion policy's initial noise: the same per seed, whatever ran before
            motion = policy.predict(batch)[0].numpy()[:, :2].sum(0)
            out.append(float(motion @ to / (np.linalg.norm(motion) * np.linalg.norm(to) + 1e-9)))
        return out


def localisation_errors(checkpoint: str, task: str, seeds: Iterable[int]) -> dict[str, list[float]] | None:
    """Per seed, in metres: how far from the goal's subject the policy's localisation head places it
    ("error"), and how far always answering the training data's mean position would be ("mean_guess").
    None for a policy without that head (MDT trained with localisation_weight=0)."""
    from embodied.data.format import STATE, state_indices

    with _policy_in_env(checkpoint, task) as (policy, env):
        if not getattr(policy, "locates", False):
            return None
        mean = np.asarray(policy.normalizer.stats[STATE]["mean"])[state_indices(policy.spec, ("goal_points",))][:3]
        out: dict[str, list[float]] = {"error": [], "mean_guess": []}
        for _, obs, batch in _first_observations(policy, env, task, seeds):
            truth = obs.state["goal_points"][:3]
            out["error"].append(float(np.linalg.norm(policy.locate(batch)[0, :3].cpu().numpy() - truth)))
            out["mean_guess"].append(float(np.linalg.norm(mean - truth)))
        return out


def pointing_errors(checkpoint: str, task: str, seeds: Iterable[int]) -> dict[str, list[float]] | None:
    """Per camera and seed, in pixels of the policy's image: how far the goal heat map's point lands from
    where the goal's subject is in that image (the privileged goal_uv), over the seeds where the subject
    is in view. None for a policy without goal heat maps (MDT's goal_heatmaps)."""
    from embodied.types import GOAL_UV

    with _policy_in_env(checkpoint, task) as (policy, env):
        if not getattr(policy.config, "goal_heatmaps", False):
            return None
        h, w = policy.config.image_size
        out: dict[str, list[float]] = {cam: [] for cam in policy.cameras}
        names = policy.spec.camera_names
        for _, obs, batch in _first_observations(policy, env, task, seeds):
            truth = obs.state[GOAL_UV].reshape(len(names), 2, 2)[:, 0]  # (camera, (u, v)) of the subject
            for cam, points in policy.point(batch).items():
                t = truth[names.index(cam)]
                if np.all(np.abs(t) < 1):
                    out[cam].append(float(np.hypot(*((points[0, 0].cpu().numpy() - t) * (w / 2, h / 2)))))
        return out


def grounding(checkpoint: str, task: str, seeds: Iterable[int]) -> dict[str, list[tuple[bool, bool]]] | None:
    """Per camera and seed: (twin, on_subject). twin: the scene holds another object of the named object's
    colour (a "green cube" beside a green cylinder), so only its shape tells them apart; on_subject: of the
    coloured objects in view, the one nearest the goal heat map's point is the named one. Over the seeds
    where the named object is in that camera's view. None for a policy without goal heat maps, or a task
    whose goal names no coloured object (the drawer tasks)."""
    from embodied.geometry import image_coordinates
    from envs.tabletop.tasks import subject_object

    with _policy_in_env(checkpoint, task) as (policy, embodiment):
        if not getattr(policy.config, "goal_heatmaps", False):
            return None
        env = embodiment.env.unwrapped
        out: dict[str, list[tuple[bool, bool]]] = {cam: [] for cam in policy.cameras}
        h, w = policy.config.image_size
        for _, _, batch in _first_observations(policy, embodiment, task, seeds):
            subject, colours = subject_object(env.goal), env.layout.colours  # only blocks and cylinders have one
            if subject not in colours:
                return None
            names = list(colours)
            twin = sum(c == colours[subject] for c in colours.values()) > 1
            where = np.stack([env.world.pos(n) for n in names])
            cameras = env.camera_info()
            for cam, points in policy.point(batch).items():
                uv = image_coordinates(where, cameras[cam]["intrinsics"], cameras[cam]["extrinsics"], h, w)
                if np.any(np.abs(uv[names.index(subject)]) >= 1):
                    continue  # the named object is not in this camera's view
                seen = np.flatnonzero(np.all(np.abs(uv) < 1, axis=1))
                nearest = seen[np.argmin(np.linalg.norm(uv[seen] - points[0, 0].cpu().numpy(), axis=1))]
                out[cam].append((twin, names[nearest] == subject))
        return out


def grounding_summary(grounded: dict[str, list[tuple[bool, bool]]]) -> dict[str, dict[str, float | int | None]]:
    """Per camera: the share of seeds whose heat map points at the named object, over the scenes with a
    same-colour twin ("twin") and those without ("single"; None where there were none), and how many seeds
    each share counts."""
    out = {}
    for cam, rows in grounded.items():
        r = np.asarray(rows, bool).reshape(-1, 2)
        out[cam] = {}
        for split, mask in (("twin", r[:, 0]), ("single", ~r[:, 0])):
            out[cam] |= {split: float(r[mask, 1].mean()) if mask.any() else None,
                         f"{split}_seeds": int(mask.sum())}
    return out


def _share(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def lifting_errors(checkpoint: str, task: str, seeds: Iterable[int]) -> dict[str, list[float]] | None:
    """Per camera and seed, metres: how far the goal's subject, pointed at by that camera's heat map and
    lifted through its depth (MDT's lift_points), lands from the subject's centre (the privileged
    goal_points). None for a policy that does not lift its points."""
    import torch

    from embodied.data.format import depth_key, extrinsics_key, intrinsics_key
    from policies.mdt.vision import lift_image_points

    with _policy_in_env(checkpoint, task) as (policy, env):
        if not policy.data_requirements().get("depth"):  # a perception stage lifts nothing, whatever its config
            return None
        out: dict[str, list[float]] = {cam: [] for cam in policy.cameras}
        for _, obs, batch in _first_observations(policy, env, task, seeds):
            for cam, points in policy.point(batch).items():
                current = [torch.as_tensor(batch[key(cam)])[:, -1] for key in (depth_key, intrinsics_key,
                                                                               extrinsics_key)]
                world, _ = lift_image_points(points[:, :1].float().cpu(), *current)
                out[cam].append(float(np.linalg.norm(world[0, 0].numpy() - obs.state["goal_points"][:3])))
        return out


def summary(cosines: list[float], located: dict[str, list[float]] | None = None) -> dict[str, float]:
    """Mean cosine, share heading straight, seeds; with `located` (localisation_errors), the mean
    localisation error and the mean-guess error in cm."""
    c = np.asarray(cosines)
    out = {"mean_cosine": float(c.mean()), "straight": float((c > STRAIGHT).mean()), "seeds": len(c)}
    if located is not None:
        out |= {"localisation_cm": 100 * float(np.mean(located["error"])),
                "mean_guess_cm": 100 * float(np.mean(located["mean_guess"]))}
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="a run, step or pretrained folder")
    ap.add_argument("--tasks", nargs="+", default=["tabletop/reach-v0"])
    ap.add_argument("--seed0", type=int, default=10_000, help="first seed (a policy's demos: its collection seeds)")
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--no-heading", action="store_true",
                    help="skip the first chunk (for a checkpoint that does not act: an MDT perception stage)")
    args = ap.parse_args(argv)
    result = {}
    for task in args.tasks:
        seeds = range(args.seed0, args.seed0 + args.seeds)
        located = localisation_errors(args.checkpoint, task, seeds)
        if args.no_heading:
            r = result[task] = ({} if located is None else
                                {"localisation_cm": 100 * float(np.mean(located["error"])),
                                 "mean_guess_cm": 100 * float(np.mean(located["mean_guess"]))})
            line = f"{task:28s}"
        else:
            r = result[task] = summary(heading_cosines(args.checkpoint, task, seeds), located)
            line = f"{task:28s} mean cosine {r['mean_cosine']:5.2f}   straight (> {STRAIGHT}) {r['straight']:4.0%}"
        if "localisation_cm" in r:
            line += f"   object located within {r['localisation_cm']:.1f} cm (the mean guess: {r['mean_guess_cm']:.1f})"
        pointed = pointing_errors(args.checkpoint, task, seeds)
        if pointed:
            r["pointing_px_median"] = {cam: float(np.median(e)) for cam, e in pointed.items() if e}
            line += "   heat map off by " + ", ".join(f"{v:.1f} px ({cam})" for cam, v in r["pointing_px_median"].items())
        grounded = grounding(args.checkpoint, task, seeds)
        if grounded:
            r["grounding"] = g = grounding_summary(grounded)
            line += "   on the named object " + ", ".join(
                f"{_share(g[cam]['single'])} alone, {_share(g[cam]['twin'])} beside a twin of its colour ({cam})"
                for cam in g)
        lifted = lifting_errors(args.checkpoint, task, seeds)
        if lifted:
            r["lifted_cm_median"] = {cam: 100 * float(np.median(e)) for cam, e in lifted.items()}
            r["lifted_cm_max"] = {cam: 100 * float(np.max(e)) for cam, e in lifted.items()}
            line += "   lifted point off by " + ", ".join(f"{r['lifted_cm_median'][cam]:.1f} cm ({cam}, worst "
                                                        f"{r['lifted_cm_max'][cam]:.1f})" for cam in lifted)
        print(line)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
