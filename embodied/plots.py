"""Curves of a run as PNG, drawn from its metrics.jsonl.

    plot_metrics("runs/bc-demo/metrics.jsonl", "runs/bc-demo")  # -> [loss.png, training.png]

metrics.jsonl holds one JSON object per line with a "step" and numbers.
`loss.png` draws every key that starts with "loss" (log scale when all
values are positive); `training.png` draws the rest (lr, samples/s, data
share, success rates logged by evaluation, ...), one panel each. Lines
without a key are skipped for that key, so evaluation lines logged every
N steps sit beside training lines logged every step.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

SKIP = ("step", "time", "epoch")


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a metrics.jsonl file; a torn last line (a run killed mid-write) is ignored."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def series(records: list[dict]) -> dict[str, tuple[list[int], list[float]]]:
    """{key: (steps, values)} for every numeric key but step/time."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    for r in records:
        if "step" not in r:
            continue
        for k, v in r.items():
            if k in SKIP or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                continue
            steps, values = out.setdefault(k, ([], []))
            steps.append(int(r["step"]))
            values.append(float(v))
    return out


def plot_metrics(metrics_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Write loss.png and training.png into out_dir; returns the files written (none if there is nothing to plot)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a training machine
    import matplotlib.pyplot as plt

    data = series(read_metrics(metrics_path))
    out_dir = Path(out_dir)
    written = []
    losses = {k: v for k, v in data.items() if k.startswith("loss")}
    if losses:
        fig, ax = plt.subplots(figsize=(7, 4))
        for k, (steps, values) in sorted(losses.items()):
            ax.plot(steps, values, label=k, lw=1.2 if k == "loss" else 0.8)
        if all(v > 0 for _, values in losses.values() for v in values):
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(_save(fig, out_dir / "loss.png"))
    others = {k: v for k, v in data.items() if not k.startswith("loss")}
    if others:
        n = len(others)
        cols = min(3, n)
        rows = math.ceil(n / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
        for ax, (k, (steps, values)) in zip(axes.flat, sorted(others.items())):
            ax.plot(steps, values, marker="o" if len(values) < 20 else None, ms=3)
            ax.set_title(k, fontsize=9)
            ax.set_xlabel("step", fontsize=8)
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[n:]:
            ax.set_visible(False)
        fig.tight_layout()
        written.append(_save(fig, out_dir / "training.png"))
    return written


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
