"""The main job's report: success table, plot and rollout videos, in one folder.

Written as Markdown (report.md) with a PNG plot, MP4 rollouts and a JSON of
every figure in the table (report.json), so the numbers a person reads are
the numbers a program can check.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def plot_success(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Horizontal bar chart of success rate per task, with episode counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["task"] for r in rows]
    rates = [100.0 * r["success_rate"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(rows) + 1.2))
    bars = ax.barh(names, rates, color="#4c72b0")
    for bar, r in zip(bars, rows):
        ax.text(min(bar.get_width() + 1, 101), bar.get_y() + bar.get_height() / 2,
                f"{r['succeeded']}/{r['episodes']}", va="center", fontsize=8)
    ax.set_xlim(0, 110)
    ax.set_xlabel("success rate (%)")
    ax.set_title(title)
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def markdown_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    """rows -> Markdown table; columns are (key, header, format spec)."""
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(format(r[k], f) for k, _, f in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def write_collection_report(
    out_dir: Path,
    stats: dict[str, Any],
    dataset_root: Path,
    *,
    videos: int = 3,
    seconds: float | None = None,
    config: dict[str, Any] | None = None,
) -> Path:
    """Write report.md, report.json, success.png and a few rollout MP4s into `out_dir`."""
    from embodied.data import open_dataset, render_episode

    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "task": s.task,
            "episodes": s.attempted,
            "succeeded": s.succeeded,
            "success_rate": s.success_rate,
            "mean_steps": float(np.mean(s.steps)) if s.steps else 0.0,
            "interventions": s.interventions,
        }
        for s in stats.values()
    ]
    total = sum(r["episodes"] for r in rows)
    ok = sum(r["succeeded"] for r in rows)
    summary = {"episodes": total, "succeeded": ok, "success_rate": ok / total if total else 0.0}
    plot_success(rows, out_dir / "success.png", f"Scripted expert success ({ok}/{total})")

    video_names: list[tuple[str, str]] = []
    if dataset_root.exists() and (dataset_root / "meta" / "info.json").exists():
        ds = open_dataset(dataset_root)
        recorded = [s for s in stats.values() if s.episode_indices]
        # evenly spread over the tasks, one episode of each
        count = min(videos, len(recorded))
        spread = sorted({round(k * (len(recorded) - 1) / max(1, count - 1)) for k in range(count)})
        for s in (recorded[k] for k in spread):
            i = s.episode_indices[0]
            ep = ds.episode(i)
            name = f"rollout_{s.task.replace('/', '_')}_{i:03d}.mp4"
            render_episode(ep, out_dir / name)
            video_names.append((name, f"{s.task}: \"{ep.task}\""))

    cols = [
        ("task", "task", "s"),
        ("episodes", "episodes", "d"),
        ("succeeded", "succeeded", "d"),
        ("success_rate", "success rate", ".0%"),
        ("mean_steps", "mean steps", ".1f"),
        ("interventions", "safety interventions", "d"),
    ]
    lines = [
        "# Expert demonstrations",
        "",
        f"{ok} of {total} scripted-expert episodes succeeded ({summary['success_rate']:.1%}); "
        f"successful ones were written to `{dataset_root}` (LeRobotDataset v3.0 layout)."
        + (f" Took {seconds:.0f} s." if seconds is not None else ""),
        "",
        markdown_table(rows, cols),
        "",
        "![success per task](success.png)",
        "",
        "## Rollouts",
        "",
    ]
    lines += [f"- [{task}]({name})" for name, task in video_names] or ["(no episodes recorded)"]
    if config:
        lines += ["", "## Config", "", "```json", json.dumps(config, indent=2, default=str), "```"]
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    (out_dir / "report.json").write_text(
        json.dumps({"summary": summary, "tasks": rows, "videos": [n for n, _ in video_names], "seconds": seconds,
                    "config": config}, indent=2, default=str)
    )
    return out_dir / "report.md"
