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


COLLECTION_COLUMNS = [
    ("task", "task", "s"),
    ("episodes", "episodes", "d"),
    ("succeeded", "succeeded", "d"),
    ("success_rate", "success rate", ".0%"),
    ("mean_steps", "mean steps", ".1f"),
    ("interventions", "safety interventions", "d"),
]


def collection_rows(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-task rows of a collection's TaskStats."""
    return [
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


def eval_rows(info: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-task rows of an eval_info.json."""
    return [
        {"task": task, "episodes": r["episodes"], "successes": r["successes"], "success_rate": r["success_rate"],
         "ci": f"{r['ci95'][0]:.0%}–{r['ci95'][1]:.0%}", "mean_steps": r["mean_steps"]}
        for task, r in info["tasks"].items()
    ]


EVAL_COLUMNS = [
    ("task", "task", "s"),
    ("episodes", "episodes", "d"),
    ("successes", "successes", "d"),
    ("success_rate", "success rate", ".0%"),
    ("ci", "95% CI", "s"),
    ("mean_steps", "mean steps", ".1f"),
]


def write_demo_report(
    out_dir: Path,
    *,
    stats: dict[str, Any],
    dataset_root: Path,
    run_dir: Path | None,
    checkpoint: Path,
    eval_info: dict[str, Any],
    timings: dict[str, float],
    config: dict[str, Any],
) -> Path:
    """report.md of the main job: evaluation first, then training, then the demonstrations."""
    import shutil

    out_dir.mkdir(parents=True, exist_ok=True)
    col = collection_rows(stats)
    plot_success(col, out_dir / "experts.png", "Scripted expert success")
    ev = eval_rows(eval_info)
    total_s = sum(timings.values())
    n_ep = sum(r["episodes"] for r in ev)
    n_ok = sum(r["successes"] for r in ev)
    used = f"trained here ({run_dir})" if run_dir is not None else f"given with --checkpoint ({checkpoint})"
    lines = [
        "# embodied: collect → train → evaluate",
        "",
        f"Policy **{config.get('policy', '?')}**, checkpoint {used}. "
        f"Mean success over {len(ev)} tasks: **{eval_info['mean_success']:.1%}** ({n_ok}/{n_ep} episodes on seeds the "
        f"demonstrations did not use). Whole job: {total_s / 60:.1f} min "
        + "(" + ", ".join(f"{k.removesuffix('_s')} {v:.0f} s" for k, v in timings.items()) + ").",
        "",
        "## Evaluation",
        "",
        markdown_table(ev, EVAL_COLUMNS),
        "",
        "![success per task](eval/success.png)",
        "",
    ]
    vids = [(task, v) for task, r in eval_info["tasks"].items() for v in r.get("videos", [])]
    lines += [f"- [{task}: {Path(v).stem.rsplit('_', 1)[-1]}](eval/{v})" for task, v in vids] or ["(no videos)"]
    lines += ["", "## Training", ""]
    if run_dir is not None:
        metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
        last = metrics[-1] if metrics else {}
        rate = np.mean([m["samples_per_s"] for m in metrics if "samples_per_s" in m]) if metrics else float("nan")
        share = np.mean([m["data_share"] for m in metrics if "data_share" in m]) if metrics else float("nan")
        for name in ("loss.png", "training.png"):
            if (run_dir / name).exists():
                shutil.copy2(run_dir / name, out_dir / name)
        lines += [
            (f"{last.get('step', 0)} steps in {timings.get('train_s', 0) / 60:.1f} min, {rate:.0f} samples/s, "
             f"{share:.1%} of step time waiting for data; final loss {last.get('loss', float('nan')):.4f}. "
             f"Run folder: `{run_dir}` (config, metrics.jsonl, checkpoints)."),
            "",
            "![loss](loss.png)",
        ]
    else:
        lines.append(f"Not trained in this job: evaluated `{checkpoint}`.")
    lines += [
        "",
        "## Expert demonstrations",
        "",
        f"Written to `{dataset_root}` (LeRobotDataset v3.0).",
        "",
        markdown_table(col, COLLECTION_COLUMNS),
        "",
        "![expert success](experts.png)",
        "",
        "## Config",
        "",
        "```json",
        json.dumps(config, indent=2, default=str),
        "```",
    ]
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    (out_dir / "report.json").write_text(json.dumps(
        {"evaluation": {"mean_success": eval_info["mean_success"], "tasks": ev}, "experts": col,
         "timings": timings, "checkpoint": str(checkpoint), "trained_here": run_dir is not None, "config": config},
        indent=2, default=str))
    return out_dir / "report.md"


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
    rows = collection_rows(stats)
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

    cols = COLLECTION_COLUMNS
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
