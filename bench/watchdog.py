"""Watchdog stop time: a policy process killed mid-motion, and how fast the sim twin's arm is at rest.

A real policy process streams full-speed end-effector motions (+x, the
per-tick bound) to the robot server over loopback; once the arm moves
steadily it is SIGKILLed. The server's watchdog (no heartbeat for
`watchdog_s`) holds the arm; the figure is the time from the kill until the
end effector moves slower than 5 mm/s, sampled every 10 ms in the server
process, repeated `--trials` times. Also measured the same way: a frozen
process (SIGSTOP: a hung policy or a pulled cable).

The comparison is the goal, 100 ms; its last line is one JSON object with `stop_ms` (median).

    MUJOCO_GL=egl python bench/watchdog.py [--trials 5]
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np

GOAL_MS = 100.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=5)
    args = ap.parse_args()

    from hardware.config import load_robot_config
    from hardware.drills import freeze_drill, kill_drill
    from hardware.robots import make_robot
    from hardware.server import RobotServer, ServerConfig

    cfg = load_robot_config("sim-twin")
    server = RobotServer(make_robot(cfg), ServerConfig(port=0, watchdog_s=cfg.watchdog_s,
                                                       max_action_age_s=cfg.max_action_age_s)).start()
    kills = [kill_drill(server) for _ in range(args.trials)]
    freezes = [freeze_drill(server)[0] for _ in range(max(1, args.trials // 2))]
    server.stop()
    server.embodiment.close()
    print(f"watchdog {1000 * cfg.watchdog_s:.0f} ms; heartbeat every {1000 * cfg.watchdog_s / 5:.0f} ms")
    print(f"{'fault':18s}{'speed m/s':>11s}{'stop ms':>9s}{'travel mm':>11s}{'trips':>7s}")
    for name, rs in (("SIGKILL policy", kills), ("SIGSTOP policy", freezes)):
        for r in rs:
            print(f"{name:18s}{r.speed_before:11.2f}{r.stop_ms:9.1f}{r.travel_mm:11.1f}{r.watchdog_trips:7d}")
    stop = float(np.median([r.stop_ms for r in kills]))
    print(f"median stop after a kill: {stop:.0f} ms = {stop / GOAL_MS:.2f} x the {GOAL_MS:.0f} ms goal")
    print(json.dumps({"stop_ms": round(stop, 1), "stop_ms_max": round(max(r.stop_ms for r in kills), 1),
                      "freeze_stop_ms": round(float(np.median([r.stop_ms for r in freezes])), 1),
                      "travel_mm": round(float(np.median([r.travel_mm for r in kills])), 1),
                      "speed_m_s": round(float(np.median([r.speed_before for r in kills])), 2),
                      "watchdog_ms": 1000 * cfg.watchdog_s, "trials": args.trials, "goal_ms": GOAL_MS,
                      "ratio_vs_goal": round(stop / GOAL_MS, 2)}))


if __name__ == "__main__":
    main()
