"""Training throughput of the one loop, and the share of step time spent waiting for data.

Trains the BC baseline (or any registered policy with its default config)
for a few hundred steps on a dataset — by default a made-up one with two
128x128 cameras, the tabletop suite's default — and reads the figures back
from the run's metrics.jsonl, skipping the first log window (warm-up).
Goal: data share <= 10%. Its last line is one JSON object:
{"samples_per_s": ..., "data_share": ..., ...}.

    python bench/train_throughput.py [--dataset DIR] [--policy bc] [--steps 200] [--batch-size 32] [--num-workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", type=Path, default=None, help="dataset folder (default: a made-up one)")
    p.add_argument("--policy", default="bc")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--size", type=int, default=128, help="image side of the made-up dataset")
    p.add_argument("--episodes", type=int, default=10, help="episodes of the made-up dataset (50 frames each)")
    p.add_argument("--mixed-precision", default="no", choices=("no", "bf16", "fp16"))
    args = p.parse_args()

    from embodied.train import TrainConfig, load_policy_class, train

    with tempfile.TemporaryDirectory(prefix="train-bench-") as tmp:
        data = args.dataset
        if data is None:
            from embodied.data.synthetic import synthetic_spec, write_synthetic_dataset

            started = time.perf_counter()
            data = write_synthetic_dataset(Path(tmp) / "data", args.episodes, 50, spec=synthetic_spec(size=args.size))
            print(f"made a dataset of {args.episodes} x 50 frames, 2 cameras {args.size}x{args.size} "
                  f"in {time.perf_counter() - started:.1f} s")
        log_every = max(1, args.steps // 10)
        cfg = TrainConfig(dataset=(str(data),), policy=args.policy, output_dir=tmp, name="bench", steps=args.steps,
                          batch_size=args.batch_size, num_workers=args.num_workers, log_every=log_every,
                          save_every=args.steps, mixed_precision=args.mixed_precision, warmup_steps=10)
        started = time.perf_counter()
        run = train(cfg, load_policy_class(args.policy).config_class())
        wall = time.perf_counter() - started
        lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        steady = lines[1:] or lines
        # Step-time-weighted means over the steady windows: total samples / total time, total wait / total time.
        step_time = [log_every * cfg.batch_size / m["samples_per_s"] for m in steady]
        result = {
            "policy": args.policy,
            "samples_per_s": round(sum(log_every * cfg.batch_size for _ in steady) / sum(step_time), 1),
            "data_share": round(sum(m["data_share"] * t for m, t in zip(steady, step_time)) / sum(step_time), 4),
            "batch_size": cfg.batch_size,
            "num_workers": cfg.num_workers,
            "steps": cfg.steps,
            "wall_s": round(wall, 1),
            "device": json.loads((run / "config.json").read_text())["device"],
            "cpu_count": os.cpu_count(),
        }
    print(f"{result['samples_per_s']} samples/s, {100 * result['data_share']:.1f}% of step time waiting for data")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
