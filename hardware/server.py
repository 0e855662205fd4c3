"""The robot server: runs next to the arm, takes actions over ZeroMQ, and keeps the arm safe on its own.

    python -m hardware.server --robot sim-twin          # tcp://127.0.0.1:5555
    embodied serve --robot ur5e --host 0.0.0.0 ...      # (the CLI wraps this)

Two threads. The I/O thread owns the ROUTER socket: it decodes every
message (a malformed one gets an error reply; the server stays up),
answers `heartbeat`, `status`, `hold`, `estop` and `release` at once, and runs the
watchdog: when no message came from any client for `watchdog_s` while the
arm was under remote control, it calls `hold()` and the arm stops. The
control thread executes `reset` and `step` requests in order, each step
through the server's own `SafetyFilter` (the one filter class of the
project: whatever the client did, nothing non-finite, oversized or outside
the workspace reaches the arm).

A `step` carries the id of the observation it answers. If that is not the
newest observation, or the observation is older than `max_action_age_s`,
the action is stale: it is dropped, the arm holds, and the reply is a fresh
observation (type "dropped") so the client can plan again.

An emergency stop latches: the arm holds and every step is refused (the
reply says so) until a `release`.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import queue
import sys
import threading
import time
from typing import Any

import numpy as np

from embodied.safety import SafetyConfig, SafetyFilter
from embodied.types import Action, Observation
from hardware import wire

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ServerConfig:
    """host: the address to bind (127.0.0.1 unless the user asks otherwise). watchdog_s: hold the arm when no
    message arrived for this long (s). max_action_age_s: drop actions answering older observations (s)."""

    host: str = "127.0.0.1"
    port: int = 5555
    watchdog_s: float = 0.05
    max_action_age_s: float = 0.5
    poll_s: float = 0.002  # I/O thread poll period: the watchdog's resolution


@dataclasses.dataclass
class ServerStats:
    requests: int = 0
    malformed: int = 0
    steps: int = 0
    dropped_stale: int = 0
    refused_estop: int = 0
    watchdog_trips: int = 0
    interventions: int = 0
    last_trip_time: float | None = None


class RobotServer:
    """Serves one embodiment (a `hardware.Robot`, the sim twin included) to remote clients.

    embodiment: needs spec, reset, step, hold, observe, close (and `workspace` for the safety filter).
    """

    def __init__(self, embodiment: Any, config: ServerConfig | None = None, safety: SafetyConfig | None = None):
        self.embodiment = embodiment
        self.config = config or ServerConfig()
        self.safety = SafetyFilter.for_embodiment(embodiment, safety)
        self.stats = ServerStats()
        self.estopped = threading.Event()
        self._stop = threading.Event()
        self._jobs: queue.SimpleQueue[tuple[bytes, dict[str, Any]] | None] = queue.SimpleQueue()
        self._reply_endpoint = f"inproc://robot-server-replies-{id(self)}"
        self._last_message = time.monotonic()
        self._armed = False          # under remote control: the watchdog watches
        self._obs: Observation | None = None
        self._obs_id = 0
        self._obs_time = 0.0
        self._replay: dict[bytes, tuple[int, bytes]] = {}  # client -> (seq, reply) for resent requests
        self._threads: list[threading.Thread] = []
        self.address = ""
        self._ready = threading.Event()
        self._bind_error: BaseException | None = None

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> RobotServer:
        """Bind and serve in background threads; returns once the socket is bound."""
        # Python hands the GIL between threads every 5 ms by default: that would be the link's p99 while the
        # twin's physics or the control thread runs Python. A robot server is latency-bound, not throughput-bound.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        # A full garbage collection walks every object the process holds (MuJoCo, the scene, the renderer): tens
        # of ms in the middle of a step. Freezing what exists now leaves the collector only the per-step garbage.
        gc.collect()
        gc.freeze()
        io = threading.Thread(target=self._io_loop, name="robot-server-io", daemon=True)
        ctl = threading.Thread(target=self._control_loop, name="robot-server-control", daemon=True)
        self._threads = [io, ctl]
        io.start()
        ctl.start()
        self._ready.wait(10)
        if self._bind_error is not None:
            raise self._bind_error
        return self

    def serve_forever(self) -> None:
        """Serve until Ctrl-C or stop() (starts the threads if start() was not called)."""
        if not self._threads:
            self.start()
        try:
            while not self._stop.is_set():
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._jobs.put(None)
        for t in self._threads:
            t.join(timeout=5)
        try:
            self.embodiment.hold()
        except Exception:
            log.exception("hold on shutdown failed")

    def estop(self, reason: str = "emergency stop") -> None:
        """Latch the emergency stop and hold the arm (callable from any thread: CLI, web page, API)."""
        self.estopped.set()
        self.embodiment.hold()
        log.warning("EMERGENCY STOP: %s", reason)

    def release(self) -> None:
        self.estopped.clear()

    # ---------------------------------------------------------------- I/O thread
    def _io_loop(self) -> None:
        import zmq

        ctx = zmq.Context.instance()
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, wire.MAX_MESSAGE_BYTES)
        try:
            if self.config.port == 0:
                port = sock.bind_to_random_port(f"tcp://{self.config.host}")
            else:
                sock.bind(f"tcp://{self.config.host}:{self.config.port}")
                port = self.config.port
        except zmq.ZMQError as e:
            self._bind_error = OSError(f"cannot bind tcp://{self.config.host}:{self.config.port} ({e}); "
                                       "is another server running there? choose another --port")
            self._ready.set()
            sock.close()
            return
        self.address = f"tcp://{self.config.host}:{port}"
        replies = ctx.socket(zmq.PAIR)  # the control thread's answers arrive here and wake the poll at once
        replies.bind(self._reply_endpoint)
        self._ready.set()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(replies, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(self.config.poll_s * 1000))
                if replies in events:
                    while True:
                        try:
                            sock.send_multipart(replies.recv_multipart(zmq.NOBLOCK))
                        except zmq.Again:
                            break
                if sock in events:
                    while True:
                        try:
                            frames = sock.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._on_frames(sock, frames)
                self._watchdog()
        finally:
            replies.close(linger=0)
            sock.close()

    def _on_frames(self, sock, frames: list[bytes]) -> None:
        self.stats.requests += 1
        if len(frames) != 2:  # ROUTER adds the client identity; a DEALER client sends one frame
            self.stats.malformed += 1
            if frames:
                sock.send_multipart([frames[0], wire.pack({"type": "error", "seq": -1,
                                                           "error": f"expected 1 frame, got {len(frames) - 1}"})])
            return
        ident, payload = frames
        self._last_message = time.monotonic()
        try:
            msg = wire.unpack(payload)
            wire.check_request(msg)
        except wire.WireError as e:
            self.stats.malformed += 1
            sock.send_multipart([ident, wire.pack({"type": "error", "seq": -1, "error": str(e)})])
            return
        kind, seq = msg["type"], msg["seq"]
        cached = self._replay.get(ident)
        if cached is not None and cached[0] == seq and kind in ("reset", "step"):
            sock.send_multipart([ident, cached[1]])  # a client that timed out and resent: same answer, no re-run
            return
        if kind == "heartbeat":
            sock.send_multipart([ident, wire.pack({"type": "ok", "seq": seq})])
        elif kind == "status":
            sock.send_multipart([ident, wire.pack({"type": "status", "seq": seq, "estop": self.estopped.is_set(),
                                                   "armed": self._armed, **dataclasses.asdict(self.stats)})])
        elif kind == "hold":  # a pause: stop now, no latch
            self.embodiment.hold()
            sock.send_multipart([ident, wire.pack({"type": "ok", "seq": seq})])
        elif kind == "estop":
            self.estop(str(msg.get("reason", "requested by a client")))
            sock.send_multipart([ident, wire.pack({"type": "ok", "seq": seq, "estop": True})])
        elif kind == "release":
            self.release()
            sock.send_multipart([ident, wire.pack({"type": "ok", "seq": seq, "estop": False})])
        elif kind == "hello":
            sock.send_multipart([ident, wire.pack({
                "type": "hello", "seq": seq, "spec": self.embodiment.spec.to_dict(),
                "watchdog_s": self.config.watchdog_s, "max_action_age_s": self.config.max_action_age_s,
                "workspace": [np.asarray(w, np.float64) for w in self.safety_workspace()]})])
        else:  # reset / step: executed in order by the control thread
            self._jobs.put((ident, msg))

    def safety_workspace(self) -> tuple[Any, Any]:
        c = self.safety.config
        return (c.workspace_low or (np.nan,) * 3, c.workspace_high or (np.nan,) * 3)

    def _watchdog(self) -> None:
        if self._armed and time.monotonic() - self._last_message > self.config.watchdog_s:
            self._armed = False
            self.stats.watchdog_trips += 1
            self.stats.last_trip_time = time.monotonic()
            try:
                self.embodiment.hold()
            except Exception:
                log.exception("watchdog hold failed")
            log.warning("watchdog: no message for %.0f ms; arm holding", 1000 * self.config.watchdog_s)

    # ---------------------------------------------------------------- control thread
    def _control_loop(self) -> None:
        import zmq

        self._ready.wait(10)
        if self._bind_error is not None:
            return
        out = zmq.Context.instance().socket(zmq.PAIR)
        out.setsockopt(zmq.LINGER, 0)
        out.connect(self._reply_endpoint)
        try:
            self._serve_jobs(out)
        finally:
            out.close()

    def _serve_jobs(self, out) -> None:
        while not self._stop.is_set():
            job = self._jobs.get()
            if job is None:
                return
            ident, msg = job
            try:
                reply = self._execute(msg)
            except Exception as e:
                log.exception("request %s failed", msg.get("type"))
                try:
                    self.embodiment.hold()
                finally:
                    reply = {"type": "error", "error": f"{type(e).__name__}: {e}"}
            reply["seq"] = msg["seq"]
            data = wire.pack(reply)
            self._replay[ident] = (msg["seq"], data)
            out.send_multipart([ident, data])

    def _execute(self, msg: dict[str, Any]) -> dict[str, Any]:
        if msg["type"] == "reset":
            obs = self.embodiment.reset(instruction=msg.get("instruction"), seed=msg.get("seed"))
            self.safety.reset()
            self._armed = True
            return self._obs_reply("obs", obs, False, False, {})
        # step
        if self.estopped.is_set():
            self.stats.refused_estop += 1
            self.embodiment.hold()
            return self._obs_reply("refused", self.embodiment.observe(), False, True,
                                   {"estop": True, "error": "emergency stop is latched; release it first"})
        if self._obs is None:
            return {"type": "error", "error": "step before reset: call reset first"}
        age = time.monotonic() - self._obs_time
        if msg["obs_id"] != self._obs_id or age > self.config.max_action_age_s:
            self.stats.dropped_stale += 1
            self.embodiment.hold()
            why = (f"action answers observation {msg['obs_id']}, the newest is {self._obs_id}"
                   if msg["obs_id"] != self._obs_id else
                   f"action answers an observation {1000 * age:.0f} ms old (limit {1000 * self.config.max_action_age_s:.0f} ms)")
            return self._obs_reply("dropped", self.embodiment.observe(), False, False, {"dropped": why})
        spec = self.embodiment.spec.action
        value = np.asarray(msg["action"])
        if value.shape != (spec.dim,):
            return {"type": "error", "error": f"action has shape {value.shape}; this robot takes ({spec.dim},)"}
        action = Action(value.astype(np.float32), spec)
        safe, interventions = self.safety.filter(action, self._obs)
        self.stats.interventions += len(interventions)
        self._armed = True
        t = time.monotonic()
        result = self.embodiment.step(safe)
        self.stats.steps += 1
        info = dict(result.info)
        info["server_safety"] = [i.to_dict() for i in interventions]
        info["server_step_ms"] = 1000 * (time.monotonic() - t)
        return self._obs_reply("obs", result.obs, result.success, result.done, info)

    def _obs_reply(self, kind: str, obs: Observation, success: bool, done: bool, info: dict) -> dict[str, Any]:
        self._obs_id += 1
        self._obs, self._obs_time = obs, time.monotonic()
        return {"type": kind, "obs_id": self._obs_id, "obs": wire.encode_observation(obs), "success": bool(success),
                "done": bool(done), "info": wire.jsonable(info)}


def main(argv: list[str] | None = None) -> None:
    from hardware.config import load_robot_config
    from hardware.robots import make_robot

    ap = argparse.ArgumentParser(description="Serve a robot (or the sim twin) to remote policies.")
    ap.add_argument("--robot", default="sim-twin", help="robot name or path to its .toml limits file")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind; anything but 127.0.0.1 exposes the arm")
    ap.add_argument("--port", type=int, default=5555)
    ap.add_argument("--task", default=None, help="sim twin only: the tabletop family laid out on each reset")
    ap.add_argument("--no-realtime-robot", action="store_true",
                    help="answer each step at once instead of at the control rate (link benchmarks only)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = load_robot_config(args.robot)
    if args.task:
        cfg = dataclasses.replace(cfg, connection={**cfg.connection, "task": args.task})
    robot = make_robot(cfg)
    robot.realtime = not args.no_realtime_robot
    server = RobotServer(robot, ServerConfig(args.host, args.port, cfg.watchdog_s, cfg.max_action_age_s),
                         cfg.safety_config())
    server.start()
    print(f"serving {cfg.name} on {server.address} (watchdog {1000 * cfg.watchdog_s:.0f} ms); Ctrl-C stops",
          flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
