"""Regenerate README tables from benchmark output (bench/results/*.json).

Each table sits between `<!-- BEGIN:<name> -->` and `<!-- END:<name> -->`
in README.md; this script rewrites what is between the markers from the JSON
that the benchmark printed as its last line. Tables are never typed by hand.

    python bench/readme_tables.py README.md          # rewrite in place
    python bench/readme_tables.py README.md --check  # exit 1 if out of date
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from statistics import fmean

RESULTS = Path(__file__).parent / "results"


def _load(name: str) -> dict | None:
    p = RESULTS / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def expert_success() -> str | None:
    d = _load("expert_success")
    if d is None:
        return None
    rows = ["| family | episodes | success rate | mean steps |", "|---|---:|---:|---:|"]
    for fam, r in d["families"].items():
        rows.append(f"| {fam} | {r['episodes']} | {r['success_rate']:.0%} | {r['mean_steps']:.1f} |")
    rows.append(f"\nLowest family success rate: **{d['min_success_rate']:.0%}** "
                f"(seeds {d['seeds'][0]}..{d['seeds'][1] - 1}; `python bench/expert_success.py`).")
    return "\n".join(rows)


def sim_throughput() -> str | None:
    d = _load("sim_throughput")
    if d is None:
        return None
    rows = ["| what | steps/s | ratio |", "|---|---:|---|"]
    rows.append(f"| raw `mujoco.mj_step(nstep=50)` through the same states (physics steps) | {d['raw_mj_step_per_s']:,.0f} | |")
    rows.append(f"| tabletop env, no rendering (physics steps incl. controller) | {d['tabletop_physics_steps_per_s']:,.0f} "
                f"| {d['ratio_physics_vs_raw']:.2f}× raw (goal ≥ 0.8) |")
    rows.append(f"| tabletop env, no rendering (control steps) | {d['tabletop_env_steps_per_s']:,.0f} | |")
    rows.append(f"| tabletop env, 2 cameras {d['image_size']}×{d['image_size']} RGB+depth | {d['tabletop_render_steps_per_s']:,.1f} "
                f"| {d['ratio_render_vs_robosuite']:.1f}× robosuite (goal ≥ 10) |")
    rows.append(f"| robosuite Lift, same 2 cameras | {d['robosuite_render_steps_per_s']:,.1f} | |")
    return "\n".join(rows)


def metaworld_experts() -> str | None:
    d = _load("metaworld_experts")
    if d is None:
        return None
    tasks = d["tasks"]
    n = sum(r["episodes"] for r in tasks.values())
    low = sorted(tasks.items(), key=lambda kv: kv[1]["success_rate"])[:5]
    lows = ", ".join(f"{k} {v['success_rate']:.0%}" for k, v in low)
    return (f"Meta-World's own scripted experts through our wrapper: **{d['mean_success']:.1%}** mean success "
            f"over {len(tasks)} tasks ({n} episodes). Lowest: {lows}.")


def eval_table(info: dict) -> str:
    """An eval_info.json (embodied.evaluate) as Markdown: task, episodes, success rate, 95% Wilson interval."""
    rows = ["| task | episodes | success rate | 95% CI |", "|---|---:|---:|---:|"]
    for task, r in info["tasks"].items():
        lo, hi = r["ci95"]
        rows.append(f"| {task} | {r['episodes']} | {r['success_rate']:.0%} | {lo:.0%}–{hi:.0%} |")
    rows.append(f"\nMean success over {len(info['tasks'])} tasks: **{info['mean_success']:.1%}** "
                f"({info['episodes']} episodes, seeds from {info['config']['seed0']}; `python -m embodied.evaluate`).")
    return "\n".join(rows)


def _eval_results(name: str) -> str | None:
    """The table of bench/results/<name>/eval_info.json, if that benchmark has been run."""
    p = RESULTS / name / "eval_info.json"
    return eval_table(json.loads(p.read_text())) if p.exists() else None


def success() -> str | None:
    """bench/success.py: MDT-small vs its ablation (no MGF, no CLA) vs random, per task, with 95% intervals."""
    d, full, abl = _load("success"), RESULTS / "success" / "eval_info.json", RESULTS / "success_ablation" / "eval_info.json"
    if d is None or not full.exists():
        return None
    full_info = json.loads(full.read_text())
    # success_ablation/ and success_scratch/ may be left from an earlier run: only a run that trained them reads them.
    others = [json.loads(path.read_text()) if path.exists() and d.get(key) is not None else None
              for path, key in ((abl, "ablation_mean_success"),
                                (RESULTS / "success_scratch" / "eval_info.json", "scratch_mean_success"))]
    header = "| task | MDT-small | 95% CI | without MGF + CLA | 95% CI |"
    if others[1]:
        header += " without the perception stage | 95% CI |"
    rows = [header, "|---|" + "---:|" * (header.count("|") - 2)]
    for task, r in full_info["tasks"].items():
        cells = [f"{r['success_rate']:.0%} | {r['ci95'][0]:.0%}–{r['ci95'][1]:.0%}"]
        for info in others[: 2 if others[1] else 1]:
            a = info["tasks"][task] if info else None
            cells.append(f"{a['success_rate']:.0%} | {a['ci95'][0]:.0%}–{a['ci95'][1]:.0%}" if a else "– | –")
        rows.append(f"| {task} | " + " | ".join(cells) + " |")
    st = d["settings"]
    ablation, scratch, perception = d.get("ablation_mean_success"), d.get("scratch_mean_success"), d.get("perception")
    rows.append(
        f"\nMean success **{d['mean_success']:.1%}**"
        + (f" vs **{ablation:.1%}** without MGF and CLA" if ablation is not None else "")
        + (f" ({d['ratio_vs_ablation']:.2f}×)" if d.get("ratio_vs_ablation") is not None else "")
        + (f" and **{scratch:.1%}** without the perception stage" if scratch is not None else "")
        + f"; a uniformly random policy gets {d['random_mean_success']:.1%}. Settings: {st['demos_per_task']} demos "
        + (f"({st['goals_per_layout']} goals per scene) " if st.get("goals_per_layout", 1) > 1 else "")
        + (f"and {st['rendered_scenes_per_task']} rendered scenes without demonstrations (for perception only"
           + (f", {st['scene_share']:.0%} of each batch" if st.get("scene_share") is not None else "") + ") "
           if st.get("rendered_scenes_per_task") else "")
        + (f"and a locator trained {perception['steps']} steps at {st['camera_size']} px on the demonstrations and "
           "scenes, whose reading of the goal's points from RGB-D the policy acts on (`MDTConfig.stage='locator'`, "
           "policies/mdt/locator.py; on the first frame of unseen scenes it places the named object a mean "
           f"{fmean(perception['localisation_cm'].values()):.1f} cm (median "
           f"{fmean(perception['localisation_median_cm'].values()):.1f} cm) from where it is, against "
           f"{fmean(perception['mean_guess_cm'].values()):.1f} cm for always guessing the mean) "
           if perception and perception.get("stage") == "locator" else
           f"and a perception stage of {perception['steps']} steps that every policy starts from "
           "(`MDTConfig.stage='perception'`, policies/mdt/perception.py; on its own it places the named object within "
           f"{fmean(perception['localisation_cm'].values()):.1f} cm on unseen scenes, against "
           f"{fmean(perception['mean_guess_cm'].values()):.1f} cm for always guessing the mean"
           + ("; its goal heat maps point at it within a median of "
              + " and ".join(f"{fmean(v[cam] for v in pointing.values() if cam in v):.1f} px ({cam})"
                             for cam in dict.fromkeys(c for v in pointing.values() for c in v))
              if (pointing := perception.get("pointing_px_median")) else "")
           + ") " if perception else "")
        + f"and {st['episodes_per_task']} evaluation episodes per task, {st['steps']} steps at batch {st['batch_size']}, "
        f"{st['image_size']}×{st['image_size']} images, "
        + ("MDT-small with " + ", ".join(f"`{k}={json.dumps(v)}`" for k, v in st["policy_overrides"].items()) + ", "
           if st.get("policy_overrides") else "")
        + (f"replanning every {st['execute_steps']} actions in evaluation, " if st.get("execute_steps") else "")
        + "trained on "
        + (f"{st['cpu_count']} CPU cores" if st.get("device", "cpu") == "cpu" else st["device"]) + " in "
        + ", ".join(f"{k} {v:.0f} min" for k, v in d["train_minutes"].items()) + "."
        + (f" On {seen['episodes_per_task']} of its own demonstrations' seeds per task (same scenes and goals) "
           f"it succeeds {seen['mean_success']:.0%}: the gap to the unseen seeds is what it has not learnt to "
           "generalise." if (seen := d.get("demo_seed_success")) else "")
        + (" Its first action chunk heads for the goal's object with a mean cosine of "
           f"{fmean([h['demo']['mean_cosine'] for h in heading.values()]):.2f} on its demonstrations' seeds and "
           f"{fmean([h['unseen']['mean_cosine'] for h in heading.values()]):.2f} on unseen ones "
           "(1: straight at it; `bench/heading.py`)." if (heading := d.get("heading")) else "")
        + (" Its localisation head places that object within "
           f"{fmean([h['demo']['localisation_cm'] for h in heading.values()]):.1f} cm on its demonstrations' seeds "
           f"and {fmean([h['unseen']['localisation_cm'] for h in heading.values()]):.1f} cm on unseen ones "
           f"(always guessing the mean position: {fmean([h['unseen']['mean_guess_cm'] for h in heading.values()]):.1f} cm)."
           if heading and all("localisation_cm" in h["unseen"] for h in heading.values()) else "")
    )
    return "\n".join(rows)


def demo() -> str | None:
    """The main job's own report.json (a full `make demo` run): timings and unseen-seed success."""
    d = _load("demo")
    if d is None:
        return None
    ev = d["evaluation"]
    rows = ["| task | episodes | successes | success rate | 95% CI |", "|---|---:|---:|---:|---:|"]
    rows += [f"| {r['task']} | {r['episodes']} | {r['successes']} | {r['success_rate']:.0%} | {r['ci']} |"
             for r in ev["tasks"]]
    t = d["timings"]
    rows.append(f"\nWhole job {sum(t.values()) / 60:.1f} min on this 2-core CPU ("
                + ", ".join(f"{k.removesuffix('_s')} {v:.0f} s" for k, v in t.items())
                + f"); mean success **{ev['mean_success']:.0%}** on seeds the demonstrations did not use.")
    return "\n".join(rows)


def metaworld() -> str | None:
    """bench/metaworld_mdt.py: our multi-task MDT (MT10 and/or MT50) beside the published Meta-World MT50 figures."""
    runs = [d for d in (_load("metaworld_mt50"), _load("metaworld")) if d is not None]
    if not runs:
        return None
    splits = ("easy", "medium", "hard", "very_hard")
    pub = runs[0]["published"]

    def pct(v: float | None) -> str:
        return "–" if v is None else f"{v:.1f}%"

    rows = ["| method | tasks | average | easy | medium | hard | very hard |", "|---|---|---:|---:|---:|---:|---:|"]
    for d in runs:
        cells = " | ".join(pct(None if d["splits"][s] is None else 100 * d["splits"][s]) for s in splits)
        rows.append(f"| **MDT-small (ours)** | {d['suite']} | **{pct(100 * d['mean_success'])}** | {cells} |")
    for name, r in pub["percent"].items():
        cells = " | ".join(pct(r.get(s)) for s in splits)
        rows.append(f"| {name} | {pub['suite']} | {pct(r['mean'])} | {cells} |")
    notes = []
    for d in runs:
        st = d["settings"]
        notes.append(f"{d['suite']}: {d['ratio_vs_smolvla']:.2f}× SmolVLA's average; {st['demos']} scripted demos and "
                     f"{st['episodes']} evaluation episodes per task (seeds from 10000, {st['episode_limit']}-step "
                     f"limit), {st['steps']} steps at batch {st['batch_size']}, {st['image_size']}×{st['image_size']} "
                     f"images"
                     + (f", the policy reading {' and '.join(st['state_keys'])} besides them"
                        if isinstance(st.get("state_keys"), list) else "")
                     + f", trained in {d['train_minutes']:.0f} min on {st['device']} ({st['cpu_count']} CPU cores)")
    rows.append("\nPublished rows: " + pub["source"] + ". Ours: " + "; ".join(notes)
                + ". MT10 and MT50 averages are not directly comparable; `python bench/metaworld_mdt.py --suite mt50`.")
    return "\n".join(rows)


def policy_speed() -> str | None:
    """bench/policy_speed.py: MDT-small inference speed at batch 1 on this CPU."""
    d = _load("policy_speed")
    if d is None:
        return None
    return (f"MDT-small ({d['params_m']:.2f} M parameters, {d['image_size'][0]}×{d['image_size'][1]} images, "
            f"{d['sampling_steps']} DDIM steps, chunk {d['chunk']}): **{d['replans_per_s']:.1f} replans/s** "
            f"(goal ≥ 30, {d['replans_per_s'] / 30:.2f}× the goal) and **{d['actions_per_s']:.0f} actions/s** with the chunk "
            f"executed open loop, {d['threads']} torch thread(s), observations from {d['observations']}.")


def train_throughput() -> str | None:
    """bench/train_throughput.py: training samples/s and the share of step time spent waiting for data."""
    d = _load("train_throughput")
    if d is None:
        return None
    return (f"{d['policy']}: **{d['samples_per_s']:.0f} samples/s** at batch {d['batch_size']} with "
            f"{d['num_workers']} loader workers on {d['device']} ({d['cpu_count']} cores); "
            f"**{100 * d['data_share']:.1f}%** of step time waiting for data (goal ≤ 10%).")


def robot_link() -> str | None:
    """bench/server_latency.py and bench/watchdog.py: the robot link's latency and the watchdog's stop time."""
    lat, dog = _load("server_latency"), _load("watchdog")
    if lat is None and dog is None:
        return None
    rows = ["| what | figure | compared with | ratio |", "|---|---:|---|---:|"]
    if lat is not None:
        rows.append(f"| observation → action round trip, p50 ({lat['message_kb']:.0f} kB: 2 cameras "
                    f"{lat['image_size']}×{lat['image_size']} RGB-D) | {lat['p50_ms']:.2f} ms | bare ZeroMQ echo of "
                    f"the same bytes {lat['zmq_floor_p50_ms']:.2f} ms | {lat['p50_ms'] / lat['zmq_floor_p50_ms']:.1f}× |")
        rows.append(f"| same, p99 | **{lat['p99_ms']:.2f} ms** | goal ≤ {lat['goal_p99_ms']:.0f} ms | "
                    f"{lat['p99_ms'] / lat['goal_p99_ms']:.2f}× |")
    if dog is not None:
        rows.append(f"| policy process killed at {dog['speed_m_s']:.2f} m/s → arm at rest, median of "
                    f"{dog['trials']} (max {dog['stop_ms_max']:.0f} ms) | **{dog['stop_ms']:.0f} ms** | goal ≤ "
                    f"{dog['goal_ms']:.0f} ms (watchdog {dog['watchdog_ms']:.0f} ms) | {dog['ratio_vs_goal']:.2f}× |")
        rows.append(f"| policy process frozen (SIGSTOP) → arm at rest | {dog['freeze_stop_ms']:.0f} ms | "
                    f"goal ≤ {dog['goal_ms']:.0f} ms | {dog['freeze_stop_ms'] / dog['goal_ms']:.2f}× |")
    return "\n".join(rows)


def deploy_parity() -> str | None:
    """bench/deploy_parity.py: one checkpoint directly in sim vs through the robot server on the sim twin."""
    d = _load("deploy_parity")
    if d is None:
        return None
    return (f"Through the robot server on the real-time sim twin the policy succeeds in **{d['served_success']:.0%}** "
            f"of episodes, run directly in simulation in **{d['direct_success']:.0%}** (ratio {d['ratio']:.2f}, "
            f"Fisher's exact p = {d['fisher_p']:.2f}; {d['episodes_per_task']} seeds per family, "
            f"{', '.join(d['families'])}; {d['dropped']} stale actions dropped, {d['watchdog_trips']} watchdog trips).")


def correction_following() -> str | None:
    """bench/correction_following.py: does a checkpoint obey live language motions mid-task."""
    d = _load("correction_following")
    if d is None:
        return None
    text = (f"Mid-task language-motion corrections ({d['trials']} trials on {d['task']}: six directions, a correction "
            f"after 3 ticks, obeyed = the arm went more than {100 * d['min_move_m']:.0f} cm further that way than "
            f"without it): **{d['obeyed_rate']:.0%}** obeyed, {100 * d['mean_move_m']:+.1f} cm on average in the "
            f"named direction, by {d['checkpoint']}")
    if "baseline_obeyed_rate" in d:
        text += (f"; {d['baseline_obeyed_rate']:.0%} and {100 * d['baseline_mean_move_m']:+.1f} cm by {d['baseline']} "
                 f"({d['obeyed_rate'] / d['baseline_obeyed_rate'] if d['baseline_obeyed_rate'] else float('inf'):.1f}×)")
    return text + "."


def hand_relative() -> str | None:
    d = _load("hand_relative")
    if d is None:
        return None
    s = d["settings"]
    noise = d.get("point_noise") or {"stds_m": [], "families": {}}
    stds = [f"{v:g}" for v in noise["stds_m"]]
    rows = ["| family | absolute | hand-relative | offsets only | ratio |"
            + "".join(f" offsets only, ±{100 * float(v):g} cm |" for v in stds),
            "|---|---:|---:|---:|---:|" + "---:|" * len(stds)]
    for fam, r in d["families"].items():
        ratio = f"{r['ratio']:.2f}×" if r["ratio"] is not None else "–"
        rows.append(f"| {fam} | {r['absolute']:.0%} | {r['hand_relative']:.0%} | {r['offsets_only']:.0%} | {ratio} |"
                    + "".join(f" {noise['families'][fam][v]:.0%} |" for v in stds))
    mean_ratio = f"{d['ratio']:.2f}×" if d["ratio"] is not None else "–"
    rows.append(f"\nMean **{d['mean_absolute']:.1%}** absolute, **{d['mean_hand_relative']:.1%}** hand-relative and "
                f"**{d['mean_offsets_only']:.1%}** offsets only ({mean_ratio} offsets only / absolute): "
                f"state-only BC on the simulator's exact object positions, "
                f"{s['demos_per_family']} demos and {s['steps']} steps at batch {s['batch_size']} per family and "
                f"policy, replanning every {s.get('execute_steps', 10)} actions, "
                f"{s['episodes_per_family']} unseen episodes per family (seeds from {s['eval_seed0']}), "
                f"{d['wall_minutes']:.0f} min on {s['cpu_count']} CPU cores (`python bench/hand_relative.py`).")
    if stds:
        means = ", ".join(f"**{noise['mean'][v]:.1%}** at ±{100 * float(v):g} cm" for v in stds)
        rows.append(f"\nOffsets only with each episode's object positions off by a fixed random offset "
                    f"(std per axis, `goal_points_noise`: a perception system's error): mean {means}.")
    return "\n".join(rows)


TABLES = {"hand_relative": hand_relative, "correction_following": correction_following, "robot_link": robot_link, "deploy_parity": deploy_parity, "policy_speed": policy_speed, "train_throughput": train_throughput, "metaworld": metaworld, "demo": demo, "success": success, "expert_success": expert_success, "sim_throughput": sim_throughput, "metaworld_experts": metaworld_experts,
          "eval_success": lambda: _eval_results("success"), "eval_metaworld": lambda: _eval_results("metaworld")}


def render(text: str) -> str:
    for name, fn in TABLES.items():
        body = fn()
        if body is None:
            continue
        pat = re.compile(rf"(<!-- BEGIN:{name} -->)\n.*?(<!-- END:{name} -->)", re.DOTALL)  # an empty block too
        text = pat.sub(lambda m, body=body: m.group(1) + "\n" + body + "\n" + m.group(2), text)
    return text


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("readme", type=Path)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    old = args.readme.read_text()
    new = render(old)
    if args.check:
        if new != old:
            print(f"{args.readme} tables are out of date: run `python bench/readme_tables.py {args.readme}`")
            return 1
        return 0
    args.readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
