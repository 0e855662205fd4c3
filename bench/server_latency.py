"""Robot link latency: observation -> action round trip over loopback, p50 / p99, two 128x128 cameras.

The robot server serves the sim twin (front + wrist, 128x128 RGB + depth)
from its own process, as it would next to an arm; a `RemoteRobot` client in
this process steps it as fast as it answers (the robot's tick wait is
switched off for this measurement: `--no-realtime-robot` of the server). The figure is the client's
wall time per step minus the time the server spent inside the embodiment
(`server_step_ms`: physics read-out and rendering), i.e. encoding, the
ZeroMQ transport both ways, decoding and the server's own handling. No
policy runs: the action is constant.

Beside it, the floor: a bare ZeroMQ DEALER/ROUTER echo of a payload of the
same size (no encoding, no server logic), and the ratio between the two.
Goal: p99 <= 5 ms. Its last line is one JSON object.

    MUJOCO_GL=egl python bench/server_latency.py [--steps 500]
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np


def zmq_echo_floor(payload_bytes: int, n: int) -> np.ndarray:
    """Round trips (ms) of a bare ROUTER echo of `payload_bytes` request + reply."""
    import zmq

    ctx = zmq.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    stop = threading.Event()

    def echo():
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        while not stop.is_set():
            if poller.poll(50):
                ident, data = router.recv_multipart()
                router.send_multipart([ident, data])

    t = threading.Thread(target=echo, daemon=True)
    t.start()
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(f"tcp://127.0.0.1:{port}")
    data = os.urandom(payload_bytes)
    out = []
    for i in range(n + 20):
        t0 = time.perf_counter()
        dealer.send(data)
        dealer.recv()
        if i >= 20:
            out.append(1000 * (time.perf_counter() - t0))
    stop.set()
    t.join()
    dealer.close(linger=0)
    router.close(linger=0)
    return np.array(out)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--size", type=int, default=128, help="camera image size (pixels)")
    args = ap.parse_args()

    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from embodied.types import Action
    from hardware import wire
    from hardware.client import LinkError, RemoteRobot

    toml = Path(tempfile.mkdtemp()) / "twin.toml"
    text = (Path(__file__).resolve().parents[1] / "hardware" / "configs" / "sim-twin.toml").read_text()
    toml.write_text(text.replace("width = 128", f"width = {args.size}").replace("height = 128", f"height = {args.size}"))
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "hardware.server", "--robot", str(toml), "--port", str(port),
                               "--no-realtime-robot"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                client = RemoteRobot(f"tcp://127.0.0.1:{port}", timeout_s=2.0, retries=0)
                break
            except LinkError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
        obs = client.reset(seed=0)
        action = Action(np.zeros(client.spec.action.dim, np.float32), client.spec.action)
        action.value[-1] = 1.0
        reply_bytes = len(wire.pack({"type": "obs", "seq": 1, "obs": wire.encode_observation(obs)}))
        link, total = [], []
        for i in range(args.steps + 20):
            t0 = time.perf_counter()
            r = client.step(action)
            dt = 1000 * (time.perf_counter() - t0)
            if i >= 20:  # warm-up
                link.append(dt - r.info["server_step_ms"])
                total.append(dt)
        client.close()
    finally:
        server.terminate()
        server.wait(10)
    link = np.array(link)
    floor = zmq_echo_floor(reply_bytes, args.steps)
    p50, p99 = np.percentile(link, 50), np.percentile(link, 99)
    f50, f99 = np.percentile(floor, 50), np.percentile(floor, 99)
    print(f"observation message: {reply_bytes / 1e3:.0f} kB (2 cameras {args.size}x{args.size} RGB + depth, state)")
    print(f"{'':34s}{'p50 ms':>9s}{'p99 ms':>9s}")
    print(f"{'embodied link (excl. robot)':34s}{p50:9.2f}{p99:9.2f}")
    print(f"{'bare ZeroMQ echo, same bytes':34s}{f50:9.2f}{f99:9.2f}")
    print(f"{'ratio (link / bare)':34s}{p50 / f50:9.2f}{p99 / f99:9.2f}")
    print(f"whole step incl. the twin's read-out and rendering: p50 {np.percentile(total, 50):.1f} ms")
    print(json.dumps({"p50_ms": round(float(p50), 3), "p99_ms": round(float(p99), 3),
                      "zmq_floor_p50_ms": round(float(f50), 3), "zmq_floor_p99_ms": round(float(f99), 3),
                      "ratio_p99_vs_floor": round(float(p99 / f99), 2), "message_kb": round(reply_bytes / 1e3, 1),
                      "image_size": args.size, "steps": args.steps, "goal_p99_ms": 5.0}))


if __name__ == "__main__":
    main()
