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
generalising. Last line: JSON with the mean cosine and the share above 0.9
per task.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np

STRAIGHT = 0.9  # cosine above which a chunk counts as heading straight for the object


def heading_cosines(checkpoint: str, task: str, seeds: Iterable[int]) -> list[float]:
    """Per seed: cosine between the first chunk's xy motion and the xy direction from the hand to the subject."""
    import torch

    from embodied.batching import histories_to_batch
    from embodied.checkpoint import load_policy
    from embodied.evaluate import checkpoint_spec
    from embodied.sim import make_embodiment

    folder, spec = checkpoint_spec(checkpoint)
    if spec.action.mode != "ee_delta":
        raise ValueError(f"heading needs ee_delta actions (a translation per tick); {checkpoint} acts in "
                         f"{spec.action.mode}")
    size = (spec.cameras[0].height, spec.cameras[0].width) if spec.cameras else (64, 64)
    env = make_embodiment(task, cameras=spec.camera_names, image_size=size)
    try:
        policy = load_policy(folder, expect_spec=env.spec).eval()
        out = []
        for seed in seeds:
            obs = env.reset(seed=seed)
            if "goal_points" not in obs.state:
                raise ValueError(f"{task} gives no goal_points (privileged state); heading is for tabletop tasks")
            to = (obs.state["goal_points"][:3] - obs.state["ee_pos"])[:2]
            batch = histories_to_batch([[obs]], policy.spec, policy.cameras, 1, [obs.instruction])
            torch.manual_seed(seed)  # a diffusion policy's initial noise: the same per seed, whatever ran before
            chunk = policy.predict(batch)[0].numpy()
            motion = chunk[:, :2].sum(0)
            out.append(float(motion @ to / (np.linalg.norm(motion) * np.linalg.norm(to) + 1e-9)))
        return out
    finally:
        env.close()


def summary(cosines: list[float]) -> dict[str, float]:
    c = np.asarray(cosines)
    return {"mean_cosine": float(c.mean()), "straight": float((c > STRAIGHT).mean()), "seeds": len(c)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="a run, step or pretrained folder")
    ap.add_argument("--tasks", nargs="+", default=["tabletop/reach-v0"])
    ap.add_argument("--seed0", type=int, default=10_000, help="first seed (a policy's demos: its collection seeds)")
    ap.add_argument("--seeds", type=int, default=30)
    args = ap.parse_args(argv)
    result = {}
    for task in args.tasks:
        result[task] = summary(heading_cosines(args.checkpoint, task, range(args.seed0, args.seed0 + args.seeds)))
        print(f"{task:28s} mean cosine {result[task]['mean_cosine']:5.2f}   "
              f"straight (> {STRAIGHT}) {result[task]['straight']:4.0%}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
